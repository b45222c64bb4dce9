"""The framebroker wire protocol, version 1: bytes in, typed objects out.

Pure: no sockets, no OpenCV. Everything that touches a socket calls this module and
nothing else knows the byte layout. The normative description is ``docs/protocol.md``.

Frame message (ONE ZeroMQ frame, so ZMQ_CONFLATE keeps whole frames)::

    topic       stream id, UTF-8, 1..MAX_STREAM_ID_BYTES bytes, never 0x00
    0x00        topic terminator: subscribe to b"cam1\\x00" for exactly "cam1",
                to b"site1/" for every stream whose id starts with "site1/"
    major       1 byte, protocol major version (1)
    hlen        4 bytes, unsigned big-endian, length of the header
    header      msgpack map with string keys (FrameHeader)
    payload     the rest: JPEG bytes or raw pixels in row-major order; it must fit the
                header (raw: exactly prod(shape) x sample size; jpeg: starts FF D8)

Result message (consumer -> sink, one ZeroMQ frame): a msgpack map (ResultMessage).
Acknowledgement (v1.1, sink -> consumer on the acknowledged results port): a msgpack map
``{"v": [1, 1], "ok": true, "ack": [id, ...]}`` naming the delivery ids now stored.
Control requests and replies live in :mod:`framebroker.control_protocol`, work requests
in :mod:`framebroker.work_protocol`; what all messages share (the version field, reading
typed map fields) in :mod:`framebroker.wire`.
"""

from __future__ import annotations

import math
import re
import struct
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import msgpack

from framebroker.control_protocol import decode_reply
from framebroker.errors import ProtocolError, VersionError
from framebroker.wire import (
    PROTOCOL_MAJOR,
    VERSION,
    choice_field,
    is_uint,
    str_field,
    uint_field,
    unpack,
    version_of,
)

VERSION_ACKED = (PROTOCOL_MAJOR, 1)  # v1.1: results with a delivery id, acknowledgements

TOPIC_END = b"\x00"
MAX_STREAM_ID_BYTES = 200
MAX_HEADER_BYTES = 64 * 1024
MAX_DIMENSION = (1 << 20) - 1  # largest height, width or channel count in a shape
_HLEN = struct.Struct(">I")
_PREAMBLE = 1 + _HLEN.size  # major byte + header length

ENCODINGS = ("jpeg", "raw")
DTYPES = ("uint8", "uint16", "float32")
SAMPLE_SIZE = {"uint8": 1, "uint16": 2, "float32": 4}  # bytes per sample of each dtype
JPEG_SOI = b"\xff\xd8"  # every JPEG file starts with this marker
PIXEL_FORMATS = ("bgr24", "gray8", "gray16", "bgra32")

# Stream ids: letters, digits and . _ - / (a "/" makes hierarchical groups), not starting
# with "/" or "$" ("$" is reserved for system topics).
STREAM_ID_PATTERN = re.compile(r"[A-Za-z0-9_.\-][A-Za-z0-9_.\-/]*\Z")
# Topics starting with "$" are reserved for the broker's system messages (docs/protocol.md,
# "Topics"): no stream id starts with it, and a receiver of the publish port skips them.
SYSTEM_TOPIC_PREFIX = b"$"


def is_system_message(data: bytes | memoryview) -> bool:
    """Whether a message from the publish port is a system message, not a frame to decode."""
    return data[:1] == SYSTEM_TOPIC_PREFIX


def validate_stream_id(stream: str) -> str:
    """Return ``stream`` if it is a valid stream id, else raise ProtocolError."""
    if not isinstance(stream, str) or not STREAM_ID_PATTERN.match(stream):
        raise ProtocolError(
            f"invalid stream id {stream!r}: use letters, digits and . _ - / (not starting with '/')"
        )
    if len(stream.encode()) > MAX_STREAM_ID_BYTES:
        raise ProtocolError(f"stream id longer than {MAX_STREAM_ID_BYTES} bytes: {stream!r}")
    return stream


def topic_for(stream: str) -> bytes:
    """The exact subscription for one stream: its id and the terminator."""
    return validate_stream_id(stream).encode() + TOPIC_END


def subscription_for(pattern: str) -> bytes:
    """Turn a user's stream pattern into a ZeroMQ SUB prefix.

    ``"cam1"`` -> exactly that stream; ``"site1/"`` or ``"site1/*"`` -> every stream under
    ``site1/``; ``"*"`` or ``""`` -> every stream.
    """
    if pattern in ("", "*"):
        return b""
    if pattern.endswith("*"):
        return pattern[:-1].encode()
    if pattern.endswith("/"):
        return pattern.encode()
    return topic_for(pattern)


@dataclass(frozen=True, slots=True)
class FrameHeader:
    """Everything a receiver needs to know about a frame besides its pixels."""

    stream: str
    session: int  # random per producer start: a restart is distinguishable
    seq: int  # per stream and session, starting at 0
    t_capture: int  # ns since the epoch, when the source delivered the frame
    t_publish: int  # ns since the epoch, when the producer sent it
    encoding: str  # "jpeg" | "raw"
    shape: tuple[int, ...]  # (height, width) or (height, width, channels)
    dtype: str = "uint8"
    pixfmt: str = "bgr24"
    meta: Mapping[str, Any] = field(default_factory=dict)
    version: tuple[int, int] = VERSION

    def to_map(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "v": list(self.version),
            "stream": self.stream,
            "session": self.session,
            "seq": self.seq,
            "t_capture": self.t_capture,
            "t_publish": self.t_publish,
            "encoding": self.encoding,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pixfmt": self.pixfmt,
        }
        if self.meta:
            out["meta"] = dict(self.meta)
        return out

    @classmethod
    def from_map(cls, m: Any) -> FrameHeader:
        if not isinstance(m, dict):
            raise ProtocolError(f"frame header is a {type(m).__name__}, not a map")
        version = version_of(m.get("v"))
        try:
            shape = m["shape"]
            meta = m.get("meta", {})
            header = cls(
                stream=str_field(m, "stream"),
                session=uint_field(m, "session"),
                seq=uint_field(m, "seq"),
                t_capture=uint_field(m, "t_capture"),
                t_publish=uint_field(m, "t_publish"),
                encoding=choice_field(m, "encoding", ENCODINGS),
                shape=tuple(shape) if isinstance(shape, list | tuple) else (),
                dtype=choice_field(m, "dtype", DTYPES),
                pixfmt=str_field(m, "pixfmt"),
                meta=meta if isinstance(meta, dict) else {},
                version=version,
            )
        except KeyError as exc:
            raise ProtocolError(f"frame header lacks required key {exc.args[0]!r}") from None
        if not (2 <= len(header.shape) <= 3) or not all(
            is_uint(d) and 0 < d <= MAX_DIMENSION for d in header.shape
        ):
            raise ProtocolError(f"frame header has invalid shape {shape!r}")
        validate_stream_id(header.stream)
        return header


@dataclass(frozen=True, slots=True)
class FrameMessage:
    """A decoded frame message: header plus the payload (a view, no copy)."""

    header: FrameHeader
    payload: memoryview


def encode_frame(header: FrameHeader, payload: bytes | memoryview) -> bytes:
    """Build the single-part wire message for one frame."""
    packed = msgpack.packb(header.to_map(), use_bin_type=True)
    return b"".join(
        (
            topic_for(header.stream),
            bytes((PROTOCOL_MAJOR,)),
            _HLEN.pack(len(packed)),
            packed,
            payload,
        )
    )


def split_topic(data: bytes | memoryview) -> tuple[bytes, int]:
    """Return (topic without terminator, offset after the terminator), cheaply.

    Used by the broker on every message: no msgpack, no copies of the payload.
    """
    view = memoryview(data)
    head = bytes(view[: MAX_STREAM_ID_BYTES + 1])
    end = head.find(TOPIC_END)
    if end <= 0:
        raise ProtocolError(
            f"message has no topic terminator within the first {MAX_STREAM_ID_BYTES + 1} bytes",
            head,
            kind="no_terminator",
        )
    return head[:end], end + 1


def peek_frame(data: bytes | memoryview) -> tuple[bytes, dict[str, Any], int]:
    """The cheap structural check: (topic, header map, payload length in bytes).

    Raises ProtocolError like decode_frame. Checks the topic terminator, the major version
    byte, the header length and that the header is a msgpack map; the map's fields are NOT
    validated (no FrameHeader is built, no topic/stream comparison, no payload check). A
    fraction of :func:`decode_frame`'s cost, written with as few Python operations as
    possible (a broker runs it on every message, often with a cold CPU cache);
    :func:`decode_frame` runs only when a stream needs a full check.
    """
    head = bytes(data[: MAX_STREAM_ID_BYTES + 1 + _PREAMBLE])  # topic, 0x00, preamble
    end = head.find(0)
    if not 0 < end <= MAX_STREAM_ID_BYTES:
        raise ProtocolError(
            f"message has no topic terminator within the first {MAX_STREAM_ID_BYTES + 1} bytes",
            head,
            kind="no_terminator",
        )
    start = end + 1 + _PREAMBLE
    if len(head) < start:
        raise ProtocolError("frame message truncated before its header", head, kind="truncated")
    if head[end + 1] != PROTOCOL_MAJOR:
        raise VersionError(
            f"frame message has protocol major version {head[end + 1]}; this build speaks "
            f"{PROTOCOL_MAJOR} (upgrade framebroker to read it)",
            head,
        )
    hlen = int.from_bytes(head[end + 2 : start], "big")
    payload = len(data) - start - hlen
    if hlen > MAX_HEADER_BYTES or payload < 0:
        raise ProtocolError(
            f"frame header length {hlen} exceeds the message", head, kind="truncated"
        )
    try:
        header = msgpack.unpackb(data[start : start + hlen], raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(f"invalid msgpack: {exc}", head, kind="header") from None
    if type(header) is not dict:
        raise ProtocolError(
            f"frame header is a {type(header).__name__}, not a map", head, kind="header"
        )
    return head[:end], header, payload


def payload_size(header: FrameHeader) -> int | None:
    """The exact payload length a frame with ``header`` must have; None if it varies (jpeg)."""
    if header.encoding != "raw":
        return None
    return math.prod(header.shape) * SAMPLE_SIZE[header.dtype]


def check_payload(header: FrameHeader, payload: bytes | memoryview) -> None:
    """Raise ProtocolError unless ``payload`` fits ``header`` (docs/protocol.md, "Payload").

    ``raw``: exactly prod(shape) x sample size bytes (kind ``size_mismatch``); ``jpeg``:
    starts with the JPEG SOI marker FF D8, so it is never empty (kind ``not_jpeg``).
    """
    expected = payload_size(header)
    if expected is not None:
        if len(payload) != expected:
            raise ProtocolError(
                f"raw payload of {len(payload)} bytes does not fit shape "
                f"{list(header.shape)} of {header.dtype} ({expected} bytes)",
                kind="size_mismatch",
            )
    elif bytes(payload[:2]) != JPEG_SOI:
        raise ProtocolError(
            f"jpeg payload of {len(payload)} bytes does not start with FF D8", kind="not_jpeg"
        )


def decode_frame(data: bytes | memoryview, *, payload_check: bool = True) -> FrameMessage:
    """Decode one frame message; raise ProtocolError on anything malformed.

    With ``payload_check`` (the default) the payload must also fit the header
    (:func:`check_payload`); ``False`` decodes what the header says whatever follows it
    (the conformance vectors report the payload check separately).
    """
    view = memoryview(data)
    topic, offset = split_topic(view)
    if len(view) < offset + _PREAMBLE:
        raise ProtocolError("frame message truncated before its header", view, kind="truncated")
    major = view[offset]
    if major != PROTOCOL_MAJOR:
        raise VersionError(
            f"frame message has protocol major version {major}; this build speaks "
            f"{PROTOCOL_MAJOR} (upgrade framebroker to read it)",
            view,
        )
    (hlen,) = _HLEN.unpack_from(view, offset + 1)
    start = offset + _PREAMBLE
    if hlen > MAX_HEADER_BYTES or start + hlen > len(view):
        raise ProtocolError(
            f"frame header length {hlen} exceeds the message", view, kind="truncated"
        )
    try:
        header = FrameHeader.from_map(unpack(view[start : start + hlen]))
    except VersionError:
        raise
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, view, kind="header") from None
    if header.stream.encode() != topic:
        raise ProtocolError(
            f"topic {topic!r} does not match header stream {header.stream!r}",
            view,
            kind="topic_mismatch",
        )
    payload = view[start + hlen :]
    if payload_check:
        try:
            check_payload(header, payload)
        except ProtocolError as exc:
            raise ProtocolError(exc.reason, view, kind=exc.kind) from None
    return FrameMessage(header=header, payload=payload)


@dataclass(frozen=True, slots=True)
class ResultMessage:
    """What a consumer's processor made of one frame, on its way to the sink."""

    consumer: str
    stream: str
    session: int
    seq: int
    t_capture: int  # the frame's capture time, ns since the epoch
    t_start: int  # when processing started, ns since the epoch
    duration_ns: int  # processing time
    result: Mapping[str, Any]
    version: tuple[int, int] = VERSION
    id: int | None = None  # v1.1 delivery id: the sink acknowledges it once stored

    @property
    def age_ns(self) -> int:
        """How old the frame was when the processor started on it."""
        return self.t_start - self.t_capture

    def to_map(self) -> dict[str, Any]:
        return {
            "v": list(self.version),
            "consumer": self.consumer,
            "stream": self.stream,
            "session": self.session,
            "seq": self.seq,
            "t_capture": self.t_capture,
            "t_start": self.t_start,
            "duration_ns": self.duration_ns,
            "result": dict(self.result),
        } | ({} if self.id is None else {"id": self.id})


def encode_result(result: ResultMessage) -> bytes:
    return msgpack.packb(result.to_map(), use_bin_type=True, default=_jsonable)


def decode_result(data: bytes | memoryview) -> ResultMessage:
    m = unpack(data)
    if not isinstance(m, dict):
        raise ProtocolError(f"result message is a {type(m).__name__}, not a map", data)
    version = version_of(m.get("v"))
    result = m.get("result")
    if not isinstance(result, dict):
        raise ProtocolError("result message field 'result' must be a map", data)
    try:
        return ResultMessage(
            consumer=str_field(m, "consumer"),
            stream=str_field(m, "stream"),
            session=uint_field(m, "session"),
            seq=uint_field(m, "seq"),
            t_capture=uint_field(m, "t_capture"),
            t_start=uint_field(m, "t_start"),
            duration_ns=uint_field(m, "duration_ns"),
            result=result,
            version=version,
            id=uint_field(m, "id") if "id" in m else None,
        )
    except KeyError as exc:
        raise ProtocolError(f"result message lacks required key {exc.args[0]!r}", data) from None


def peek_result_id(data: bytes | memoryview) -> int | None:
    """The delivery id of a result message, or None; never raises (for bad messages)."""
    try:
        m = msgpack.unpackb(data, raw=False, strict_map_key=False)
    except Exception:
        return None
    value = m.get("id") if isinstance(m, dict) else None
    return value if is_uint(value) else None


def encode_ack(ids: list[int]) -> bytes:
    """The v1.1 acknowledgement of the results with these delivery ids (all stored)."""
    return msgpack.packb({"v": list(VERSION_ACKED), "ok": True, "ack": list(ids)})


def decode_ack(data: bytes | memoryview) -> list[int]:
    """The delivery ids an acknowledgement names; ProtocolError if it is not one."""
    m = decode_reply(data)
    ids = m.get("ack")
    if not m["ok"] or not isinstance(ids, list) or not all(is_uint(i) for i in ids):
        raise ProtocolError("acknowledgement field 'ack' must be an array of uint", data)
    return ids


# --- helpers -----------------------------------------------------------------------------


def _jsonable(obj: Any) -> Any:
    """msgpack fallback for numpy scalars/arrays and tuples in processor results."""
    if hasattr(obj, "tolist"):
        return obj.tolist()
    if isinstance(obj, set | frozenset):
        return sorted(obj)
    raise TypeError(f"cannot encode {type(obj).__name__} in a result; use plain types")
