#!/usr/bin/env python3
"""Write the protocol v1 conformance vectors: ``python tests/vectors/generate.py``.

Each vector is a message (``NAME.bin``) and what a receiver must make of it
(``NAME.json``: ``{"decoded": ...}`` or ``{"error": KIND}`` as canonical JSON text, see
README.md), plus ``index.json`` describing them all. The name's prefix (``frame-``,
``result-``, ``request-``, ``reply-``) says which decoder applies.

Valid messages are built with the reference encoder (``framebroker.protocol``) where it
can make them, and by hand (``pack_map`` and friends) for encodings it never writes and for
deliberately broken messages. The expected outcomes are stated here by hand, from the spec
(docs/protocol.md), never computed by the decoder under test. Run by hand after a change
and commit the output; ``tests/test_vectors.py`` checks that the committed files are what
this script makes now.
"""

from __future__ import annotations

import dataclasses
import json
import math
import struct
import sys
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import msgpack

HERE = Path(__file__).resolve().parent
if __package__ in (None, ""):  # run as a script: make framebroker importable from a checkout
    sys.path.insert(0, str(HERE.parents[1]))

from framebroker import control_protocol, protocol, work_protocol  # noqa: E402
from framebroker.protocol import FrameHeader, ResultMessage  # noqa: E402

T0 = 1_700_000_000_000_000_000  # ns since the epoch, as in the spec's example
U64_MAX = (1 << 64) - 1

# An 8x8 BGR JPEG (quality 50) made once with OpenCV; a literal so the vectors never
# depend on the installed libjpeg.
TINY_JPEG = bytes.fromhex(
    "ffd8ffe000104a46494600010100000100010000ffdb004300100b0c0e0c0a100e0d0e1211101318281a"
    "181616183123251d283a333d3c3933383740485c4e404457453738506d51575f626768673e4d7179706478"
    "5c656763ffdb0043011112121815182f1a1a2f634238426363636363636363636363636363636363636363"
    "636363636363636363636363636363636363636363636363636363ffc00011080008000803012200021101"
    "031101ffc4001500010100000000000000000000000000000006ffc4001810010003010000000000000000"
    "000000000003052131ffc4001501010100000000000000000000000000000506ffc4001b11000104030000"
    "000000000000000000000001020304121331ffda000c03010002110311003f0096af879801896943970a1a"
    "0e5d287fffd9"
)


@dataclass(frozen=True)
class Vector:
    name: str
    description: str
    data: bytes
    expected: dict[str, Any]  # {"decoded": view} or {"error": kind}

    @property
    def type(self) -> str:
        return self.name.split("-", 1)[0]


# --- canonical JSON text (README.md) -----------------------------------------------------


def canonical(value: Any) -> str:
    """The canonical JSON text of a decoded value, as every checker prints it."""
    if value is None:
        return "null"
    if value is True:
        return "true"
    if value is False:
        return "false"
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if not math.isfinite(value):
            raise ValueError("non-finite floats have no canonical form")
        text = format(value, ".17g")  # exactly C's printf("%.17g")
        return text if any(c in text for c in ".e") else text + ".0"
    if isinstance(value, str):
        return _canonical_str(value)
    if isinstance(value, bytes | bytearray):
        return '{"$bin":"' + bytes(value).hex() + '"}'
    if isinstance(value, list | tuple):
        return "[" + ",".join(canonical(v) for v in value) + "]"
    if isinstance(value, dict):
        items = sorted(value.items(), key=lambda kv: kv[0].encode())
        return "{" + ",".join(_canonical_str(k) + ":" + canonical(v) for k, v in items) + "}"
    raise TypeError(f"no canonical form for {type(value).__name__}")


def _canonical_str(text: str) -> str:
    out = ['"']
    for ch in text:
        if ch in '"\\':
            out.append("\\" + ch)
        elif ord(ch) < 0x20:
            out.append(f"\\u{ord(ch):04x}")
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


# --- hand-made msgpack -------------------------------------------------------------------


def mp(value: Any) -> bytes:
    """The reference encoding of a value (shortest forms, str for text, bin for bytes)."""
    return bytes(msgpack.packb(value, use_bin_type=True))


def pack_map(pairs: Iterable[tuple[Any, bytes]], *, wide: bool = False) -> bytes:
    """A map from (key, already-encoded value) pairs; ``wide`` uses map 16 even if small."""
    items = list(pairs)
    if wide or len(items) > 15:
        head = b"\xde" + struct.pack(">H", len(items))
    else:
        head = bytes([0x80 | len(items)])
    return head + b"".join((k if isinstance(k, bytes) else mp(k)) + v for k, v in items)


def str8(text: str) -> bytes:
    raw = text.encode()
    return b"\xd9" + bytes([len(raw)]) + raw


def array16(encoded: list[bytes]) -> bytes:
    return b"\xdc" + struct.pack(">H", len(encoded)) + b"".join(encoded)


def u64(value: int) -> bytes:
    return b"\xcf" + struct.pack(">Q", value)


def raw_str(raw: bytes) -> bytes:
    """A msgpack str holding arbitrary bytes (for invalid UTF-8)."""
    assert len(raw) < 32
    return bytes([0xA0 | len(raw)]) + raw


def frame(topic: bytes, header: bytes, payload: bytes = b"", major: int = 1) -> bytes:
    return topic + b"\x00" + bytes([major]) + struct.pack(">I", len(header)) + header + payload


# --- frames ------------------------------------------------------------------------------


def header_map(**overrides: Any) -> dict[str, Any]:
    """A header map as the reference encoder writes it (a 2x2 gray8 raw frame of cam1)."""
    base = FrameHeader(
        stream="cam1",
        session=7,
        seq=0,
        t_capture=T0,
        t_publish=T0 + 1_000_000,
        encoding="raw",
        shape=(2, 2),
        dtype="uint8",
        pixfmt="gray8",
    ).to_map()
    base.update(overrides)
    return base


def header_pairs(m: dict[str, Any]) -> list[tuple[Any, bytes]]:
    return [(k, mp(v)) for k, v in m.items()]


GRAY_2X2 = bytes([0, 64, 128, 255])
KNOWN = ("v", "stream", "session", "seq", "t_capture", "t_publish")
KNOWN += ("encoding", "shape", "dtype", "pixfmt", "meta")


def frame_view(m: dict[str, Any], payload: bytes, check: str = "ok") -> dict[str, Any]:
    """What a decoder reports for a valid frame whose header map is ``m``."""
    header = {k: m[k] for k in KNOWN if k in m}
    if not isinstance(header.get("meta"), dict):
        header["meta"] = {}
    return {"header": header, "payload": payload.hex(), "payload_check": check}


def encoded_frame(h: FrameHeader, payload: bytes) -> tuple[bytes, dict[str, Any]]:
    return protocol.encode_frame(h, payload), frame_view(h.to_map(), payload)


def frame_vectors() -> list[Vector]:
    out: list[Vector] = []

    def ok(name: str, description: str, data: bytes, view: dict[str, Any]) -> None:
        out.append(Vector(f"frame-{name}", description, data, {"decoded": view}))

    def bad(name: str, description: str, data: bytes, kind: str) -> None:
        out.append(Vector(f"frame-{name}", description, data, {"error": kind}))

    def with_header(m: dict[str, Any], payload: bytes = GRAY_2X2, topic: bytes = b"cam1") -> bytes:
        return frame(topic, mp(m), payload)

    # valid ---------------------------------------------------------------------------
    spec = FrameHeader(
        stream="cam1",
        session=7,
        seq=0,
        t_capture=T0,
        t_publish=T0 + 1_000_000,
        encoding="raw",
        shape=(2, 2),
        dtype="uint8",
        pixfmt="gray8",
    )
    ok("spec-example", "the example message of docs/protocol.md", *encoded_frame(spec, GRAY_2X2))
    jpeg = FrameHeader(
        stream="site1/gate",
        session=(1 << 63) - 1,
        seq=41,
        t_capture=T0 + 5_000_000_000,
        t_publish=T0 + 5_004_000_000,
        encoding="jpeg",
        shape=(8, 8, 3),
        dtype="uint8",
        pixfmt="bgr24",
        meta={"location": "gate", "floor": 2},
    )
    ok(
        "jpeg-bgr24",
        "an 8x8 BGR JPEG with meta, hierarchical stream id",
        *encoded_frame(jpeg, TINY_JPEG),
    )
    bgr = spec.__class__(**{**_fields(spec), "shape": (2, 3, 3), "pixfmt": "bgr24"})
    ok("raw-bgr24", "raw 2x3 BGR: 18 bytes of pixels", *encoded_frame(bgr, bytes(range(18))))
    g16 = spec.__class__(**{**_fields(spec), "dtype": "uint16", "pixfmt": "gray16"})
    pixels16 = struct.pack("<4H", 0, 256, 4096, 65535)
    ok("raw-gray16", "raw 2x2 gray16: samples little-endian", *encoded_frame(g16, pixels16))
    gray3d = spec.__class__(**{**_fields(spec), "shape": (2, 2, 1), "seq": 1})
    ok("raw-gray8-3d", "gray8 with shape [h, w, 1]", *encoded_frame(gray3d, GRAY_2X2))
    f32 = spec.__class__(**{**_fields(spec), "shape": (1, 2), "dtype": "float32"})
    f32 = f32.__class__(**{**_fields(f32), "pixfmt": "x-gray-float"})
    ok(
        "unknown-pixfmt",
        "a pixfmt this version does not define is valid; float32 samples are 4 bytes",
        *encoded_frame(f32, struct.pack("<2f", 0.5, -1.0)),
    )
    long_id = "a" * 199 + "z"
    m = header_map(stream=long_id)
    ok(
        "stream-id-200-bytes",
        "the longest stream id",
        with_header(m, topic=long_id.encode()),
        frame_view(m, GRAY_2X2),
    )
    m = header_map(v=[1, 7]) | {"future": [1, 2, {"x": None}], "zz": b"\x00\x01"}
    ok(
        "minor-version-unknown-keys",
        "a newer minor version with keys this decoder does not know: ignored",
        with_header(m),
        frame_view(m, GRAY_2X2),
    )
    m = header_map()
    reversed_header = pack_map([(k, mp(v)) for k, v in reversed(list(m.items()))])
    ok(
        "keys-reversed",
        "header keys in another order",
        frame(b"cam1", reversed_header, GRAY_2X2),
        frame_view(m, GRAY_2X2),
    )
    m = header_map(session=U64_MAX, seq=U64_MAX, t_capture=U64_MAX, t_publish=U64_MAX)
    ok("uint64-max", "every uint field at 2^64-1", with_header(m), frame_view(m, GRAY_2X2))
    m = header_map(seq=5, session=9)
    wide = pack_map(
        [
            (str8("v"), array16([b"\xcc\x01", b"\xd0\x00"])),  # uint 8 and int 8 >= 0
            (str8("stream"), str8("cam1")),
            (str8("session"), b"\xd3" + struct.pack(">q", 9)),  # int 64
            (str8("seq"), u64(5)),
            (str8("t_capture"), u64(T0)),
            (str8("t_publish"), b"\xcf" + struct.pack(">Q", T0 + 1_000_000)),
            (str8("encoding"), b"\xda\x00\x03raw"),  # str 16
            (str8("shape"), array16([b"\xcd\x00\x02", b"\xce\x00\x00\x00\x02"])),
            (str8("dtype"), b"\xdb\x00\x00\x00\x05uint8"),  # str 32
            (str8("pixfmt"), str8("gray8")),
        ],
        wide=True,
    )
    ok(
        "wide-encodings",
        "map 16, str 8/16/32, array 16, uint 8/16/32/64 and int 8/64 where short forms fit",
        frame(b"cam1", wide, GRAY_2X2),
        frame_view(m, GRAY_2X2),
    )
    meta = {
        "text": 'Zürich € 日本 "quoted" back\\slash tab\t nl\n',
        "neg": -5,
        "big": -(1 << 63),
        "f": 0.1,
        "half": 12.5,
        "one": 1.0,
        "flag": True,
        "none": None,
        "list": [1, "two", [3.5]],
        "nested": {"b": {"c": []}, "a": {}},
        "blob": b"\x00\xffok",
    }
    m = header_map(meta=meta)
    ok("meta-values", "meta holding every kind of value", with_header(m), frame_view(m, GRAY_2X2))
    m = header_map(meta="not a map")
    ok(
        "meta-not-map",
        "a meta that is not a map is ignored",
        with_header(m),
        frame_view(m, GRAY_2X2),
    )
    m = header_map(meta=[1, 2])
    ok(
        "meta-array",
        "a meta that is an array is ignored too",
        with_header(m),
        frame_view(m, GRAY_2X2),
    )
    m = header_map(shape=[1048575, 1])
    ok(
        "shape-largest",
        "the largest shape entry (payload check fails)",
        with_header(m),
        frame_view(m, GRAY_2X2, "size_mismatch"),
    )
    m = header_map()
    ok(
        "raw-size-mismatch",
        "valid message, but 3 bytes of pixels for a 2x2 uint8 image",
        with_header(m, GRAY_2X2[:3]),
        frame_view(m, GRAY_2X2[:3], "size_mismatch"),
    )
    ok(
        "raw-empty-payload",
        "valid message with no payload at all",
        with_header(m, b""),
        frame_view(m, b"", "size_mismatch"),
    )
    m = header_map(encoding="jpeg", shape=[8, 8, 3], pixfmt="bgr24")
    ok(
        "jpeg-bad-magic",
        "a jpeg payload that does not start with FF D8",
        with_header(m, b"\x89PNG"),
        frame_view(m, b"\x89PNG", "not_jpeg"),
    )
    ok(
        "jpeg-one-byte",
        "a jpeg payload of one byte FF",
        with_header(m, b"\xff"),
        frame_view(m, b"\xff", "not_jpeg"),
    )

    # invalid: preamble ----------------------------------------------------------------
    good_header = mp(header_map())
    bad("empty", "zero bytes", b"", "no_terminator")
    bad("no-terminator", "no 0x00 anywhere", b"cam1 and nothing else", "no_terminator")
    bad(
        "empty-topic",
        "starts with the terminator",
        frame(b"", good_header, GRAY_2X2),
        "no_terminator",
    )
    bad(
        "topic-201-bytes",
        "no 0x00 within the first 201 bytes",
        frame(b"a" * 201, mp(header_map(stream="a" * 201)), GRAY_2X2),
        "no_terminator",
    )
    bad("truncated-after-topic", "ends right after the terminator", b"cam1\x00", "truncated")
    bad("truncated-length", "header length cut short", b"cam1\x00\x01\x00\x00", "truncated")
    bad(
        "header-beyond-end",
        "header length larger than the rest of the message",
        b"cam1\x00\x01" + struct.pack(">I", len(good_header) + 1) + good_header,
        "truncated",
    )
    bad(
        "header-over-64k",
        "header length 65537 (over the limit) with all bytes present",
        b"cam1\x00\x01" + struct.pack(">I", 65537) + bytes(65537),
        "truncated",
    )
    bad(
        "major-2",
        "preamble major version 2",
        frame(b"cam1", good_header, GRAY_2X2, major=2),
        "version",
    )
    bad(
        "major-0",
        "preamble major version 0",
        frame(b"cam1", good_header, GRAY_2X2, major=0),
        "version",
    )
    bad(
        "major-2-garbage",
        "major 2 is reported before anything after it is looked at",
        b"cam1\x00\x02\xff\xff\xff\xffjunk",
        "version",
    )

    # invalid: header ------------------------------------------------------------------
    def bad_header(name: str, description: str, header: bytes, kind: str = "header") -> None:
        bad(name, description, frame(b"cam1", header, GRAY_2X2), kind)

    def bad_field(name: str, description: str, kind: str = "header", **change: Any) -> None:
        bad_header(name, description, mp(header_map(**change)), kind)

    bad_header("header-empty", "header length 0", b"")
    bad_header("header-invalid-msgpack", "0xc1 is never valid msgpack", b"\xc1")
    bad_header("header-cut", "a map cut in the middle", good_header[:-3])
    bad_header("header-not-map", "the header is an array", mp([1, 0]))
    bad_header("header-trailing-byte", "one byte after the map, inside H", good_header + b"\xc0")
    bad_header(
        "header-int-key",
        "a map key that is an integer",
        pack_map([*header_pairs(header_map()), (mp(7), mp("x"))]),
    )
    bad_header(
        "header-invalid-utf8",
        "a str value that is not UTF-8 (lone continuation byte)",
        pack_map([*header_pairs(header_map()), ("note", raw_str(b"a\x80b"))]),
    )
    bad_header(
        "header-overlong-utf8",
        "an overlong UTF-8 form of '/'",
        pack_map([*header_pairs(header_map()), ("note", raw_str(b"\xc0\xaf"))]),
    )
    bad_header(
        "header-surrogate-utf8",
        "a UTF-8-encoded surrogate (U+D800)",
        pack_map([*header_pairs(header_map()), ("note", raw_str(b"\xed\xa0\x80"))]),
    )
    deep_bad = pack_map([("k", b"\x91" + raw_str(b"\xff"))])  # {"k": ["\xff"]}
    bad_header(
        "header-invalid-utf8-in-meta",
        "invalid UTF-8 inside a list inside meta",
        pack_map([*header_pairs(header_map()), ("meta", deep_bad)]),
    )
    m = header_map()
    del m["v"]
    bad_header("v-missing", "no v", mp(m))
    bad_field("v-string", "v is a string", v="1.0")
    bad_field("v-one-entry", "v has one entry", v=[1])
    bad_field("v-three-entries", "v has three entries", v=[1, 0, 0])
    bad_field("v-bool", "v[0] is true, not 1", v=[True, 0])
    bad_field("v-negative-minor", "v[1] is negative", v=[1, -1])
    bad_field("v-float", "v[0] is the float 1.0", v=[1.0, 0])
    bad_field("v-major-2", "v says major 2 (the preamble says 1)", "version", v=[2, 0])
    m = header_map(v=[2, 0])
    del m["stream"]
    bad_header(
        "v-major-2-missing-stream", "version is checked before the other keys", mp(m), "version"
    )
    for key in (
        "stream",
        "session",
        "seq",
        "t_capture",
        "t_publish",
        "encoding",
        "shape",
        "dtype",
        "pixfmt",
    ):
        m = header_map()
        del m[key]
        bad_header(f"missing-{key.replace('_', '-')}", f"no {key}", mp(m))
    bad_field("seq-negative", "seq is -1", seq=-1)
    bad_field("seq-float", "seq is the float 1.0", seq=1.0)
    bad_field("seq-bool", "seq is true", seq=True)
    bad_field("seq-string", "seq is a string", seq="7")
    bad_field("seq-nil", "seq is nil", seq=None)
    bad_field("session-negative", "session is a large negative int 64", session=-(1 << 63))
    bad_field("t-capture-float", "t_capture is a float", t_capture=1.7e18)
    bad_field("stream-int", "stream is an integer", stream=5)
    bad_header(
        "stream-bin",
        "stream is bin, not str",
        pack_map([(k, mp(b"cam1") if k == "stream" else mp(v)) for k, v in header_map().items()]),
    )
    bad_field("encoding-png", "encoding png does not exist in v1", encoding="png")
    bad_field("encoding-upper", "encoding values are case-sensitive", encoding="RAW")
    bad_field("dtype-float64", "dtype float64 does not exist in v1", dtype="float64")
    bad_field("pixfmt-int", "pixfmt is an integer", pixfmt=8)
    bad_field("shape-1d", "shape has one entry", shape=[4])
    bad_field("shape-4d", "shape has four entries", shape=[1, 2, 2, 1])
    bad_field("shape-zero", "a shape entry is 0", shape=[0, 2])
    bad_field("shape-too-large", "a shape entry is 2^20", shape=[1 << 20, 1])
    bad_field("shape-float", "a shape entry is a float", shape=[2.0, 2])
    bad_field("shape-bool", "a shape entry is true", shape=[True, 2])
    bad_field("shape-string", "shape is a string", shape="2x2")
    bad_field("stream-reserved", "stream ids starting with $ are reserved", stream="$streams")
    bad(
        "stream-reserved-topic",
        "a $ topic with a matching header",
        frame(b"$streams", mp(header_map(stream="$streams")), GRAY_2X2),
        "header",
    )
    bad_field("stream-space", "a space is not allowed in a stream id", stream="cam 1")
    bad_field("stream-slash-first", "a stream id may not start with /", stream="/cam1")
    bad_field("stream-non-ascii", "stream ids are ASCII", stream="cäm1")

    # invalid: topic ------------------------------------------------------------------
    bad(
        "topic-mismatch",
        "topic cam2, header stream cam1",
        frame(b"cam2", good_header, GRAY_2X2),
        "topic_mismatch",
    )
    bad(
        "topic-prefix",
        "topic cam, header stream cam1",
        frame(b"cam", good_header, GRAY_2X2),
        "topic_mismatch",
    )
    bad(
        "topic-invalid-utf8",
        "topic bytes that are not UTF-8, valid header",
        frame(b"cam\xff", good_header, GRAY_2X2),
        "topic_mismatch",
    )
    return out


def _fields(h: FrameHeader) -> dict[str, Any]:
    return {name: getattr(h, name) for name in FrameHeader.__slots__}


# --- results -----------------------------------------------------------------------------


def result_map(**overrides: Any) -> dict[str, Any]:
    base = ResultMessage(
        consumer="c1",
        stream="cam1",
        session=7,
        seq=0,
        t_capture=T0,
        t_start=T0 + 20_000_000,
        duration_ns=1_500_000,
        result={"mean": 12.5},
    ).to_map()
    base.update(overrides)
    return base


RESULT_KNOWN = ("v", "consumer", "stream", "session", "seq", "t_capture", "t_start")
RESULT_KNOWN += ("duration_ns", "result")


def result_view(m: dict[str, Any]) -> dict[str, Any]:
    return {k: m[k] for k in RESULT_KNOWN}


def result_vectors() -> list[Vector]:
    out: list[Vector] = []

    def ok(name: str, description: str, data: bytes, m: dict[str, Any]) -> None:
        out.append(Vector(f"result-{name}", description, data, {"decoded": result_view(m)}))

    def bad(name: str, description: str, data: bytes, kind: str = "invalid") -> None:
        out.append(Vector(f"result-{name}", description, data, {"error": kind}))

    spec = ResultMessage(
        consumer="c1",
        stream="cam1",
        session=7,
        seq=0,
        t_capture=T0,
        t_start=T0 + 20_000_000,
        duration_ns=1_500_000,
        result={"mean": 12.5},
    )
    ok(
        "spec-example",
        "the example result of docs/protocol.md",
        protocol.encode_result(spec),
        spec.to_map(),
    )
    m = result_map(result={})
    ok("empty-result", "an empty result map", mp(m), m)
    values = {
        "boxes": [[1, 2, 30, 40], [5, 6, 7, 8]],
        "label": "person ✓",
        "score": 0.875,
        "neg": -1,
        "ok": False,
        "missing": None,
        "raw": b"\x01\x02",
        "deep": {"a": {"b": {"c": [1.5e-07, 3e20]}}},
    }
    m = result_map(result=values)
    ok("values", "a result holding every kind of value", mp(m), m)
    f32 = pack_map(
        [(k, mp(v)) for k, v in result_map().items() if k != "result"]
        + [("result", pack_map([("x", b"\xca" + struct.pack(">f", 0.1))]))]
    )
    m = result_map(result={"x": struct.unpack(">f", struct.pack(">f", 0.1))[0]})
    ok("float32", "a float 32 value is widened to double", f32, m)
    m = result_map(v=[1, 3], session=U64_MAX, seq=U64_MAX) | {"host": "w1"}
    ok(
        "minor-version-unknown-keys-uint64",
        "a newer minor version, an unknown key and 2^64-1 values (decodable; the sink cannot "
        "store them)",
        mp(m),
        m,
    )
    m = result_map(v=[1, 1], id=42)
    ok(
        "v1-1-delivery-id",
        "v1.1: a result with a delivery id, sent to the acknowledged results port (a v1.0 "
        "receiver ignores the id)",
        protocol.encode_result(protocol.decode_result(mp(m))),
        m,
    )

    bad("invalid-msgpack", "0xc1", b"\xc1")
    bad("empty", "zero bytes", b"")
    bad("not-map", "an array", mp([1, 2]))
    bad("trailing-byte", "a byte after the map", mp(result_map()) + b"\xc0")
    bad("v-missing", "no v", mp({k: v for k, v in result_map().items() if k != "v"}))
    bad("v-major-2", "major version 2", mp(result_map(v=[2, 0])), "version")
    bad(
        "v-major-2-no-result",
        "version is checked before the other keys",
        mp({k: v for k, v in result_map(v=[2, 0]).items() if k != "result"}),
        "version",
    )
    bad("result-missing", "no result", mp({k: v for k, v in result_map().items() if k != "result"}))
    bad("result-string", "result is a string", mp(result_map(result="text")))
    bad("result-array", "result is an array", mp(result_map(result=[1, 2])))
    bad(
        "duration-missing",
        "no duration_ns",
        mp({k: v for k, v in result_map().items() if k != "duration_ns"}),
    )
    bad("seq-negative", "seq is -1", mp(result_map(seq=-1)))
    bad("t-start-float", "t_start is a float", mp(result_map(t_start=1.7e18)))
    bad("consumer-int", "consumer is an integer", mp(result_map(consumer=3)))
    bad("stream-bin", "stream is bin, not str", mp(result_map(stream=b"cam1")))
    bad(
        "result-int-key",
        "an integer key inside result",
        pack_map(
            [(k, mp(v)) for k, v in result_map().items() if k != "result"]
            + [("result", pack_map([(mp(1), mp("one"))]))]
        ),
    )
    bad(
        "invalid-utf8",
        "invalid UTF-8 inside result",
        pack_map(
            [(k, mp(v)) for k, v in result_map().items() if k != "result"]
            + [("result", pack_map([("label", raw_str(b"\xe2\x82"))]))]
        ),
    )
    return out


# --- control -----------------------------------------------------------------------------


def control_vectors() -> list[Vector]:
    out: list[Vector] = []

    def ok(name: str, description: str, data: bytes, view: dict[str, Any]) -> None:
        out.append(Vector(name, description, data, {"decoded": view}))

    def bad(name: str, description: str, data: bytes, kind: str = "invalid") -> None:
        out.append(Vector(name, description, data, {"error": kind}))

    for op in control_protocol.CONTROL_OPS:
        ok(
            f"request-{op}",
            f"the {op} request",
            control_protocol.encode_request(op),
            {"op": op, "v": [1, 0]},
        )
    ok(
        "request-minor-extra-key",
        "a newer minor version with an argument this broker ignores",
        mp({"v": [1, 2], "op": "streams", "prefix": "site1/"}),
        {"op": "streams", "v": [1, 2]},
    )
    bad("request-unknown-op", "op reboot", control_protocol.encode_request("reboot"))
    bad("request-op-missing", "no op", mp({"v": [1, 0]}))
    bad("request-op-int", "op is an integer", mp({"v": [1, 0], "op": 1}))
    bad("request-v-missing", "no v", mp({"op": "ping"}))
    bad("request-v-major-2", "major version 2", mp({"v": [2, 0], "op": "ping"}), "version")
    bad("request-not-map", "a string", mp("streams"))
    bad("request-invalid-msgpack", "0xc1", b"\xc1")

    # ping (v1.5): who answers, the protocol version it implements, what it serves
    broker_ping = {
        "server": "broker",
        "version": "0.1.0",
        "protocol": [1, 6],
        "capabilities": ["broker_set", "feeds", "shared_memory", "work_groups"],
    }
    ok(
        "reply-ping",
        "the broker's ping reply: protocol 1.6, capabilities broker_set, feeds, "
        "shared_memory, work_groups",
        control_protocol.encode_reply(**broker_ping),
        {"v": [1, 0], "ok": True} | broker_ping,
    )
    sink_ping = broker_ping | {"server": "sink", "capabilities": ["acked_results", "sink_control"]}
    ok(
        "reply-ping-sink",
        "the sink's ping reply (its control port, v1.5): acknowledged results, sink control",
        control_protocol.encode_reply(**sink_ping),
        {"v": [1, 0], "ok": True} | sink_ping,
    )
    newer = broker_ping | {"protocol": [1, 9], "capabilities": ["teleport", "work_groups"]}
    ok(
        "reply-ping-unknown-capability",
        "a newer server: a minor version and a capability this client does not know (ignore it)",
        control_protocol.encode_reply(**newer),
        {"v": [1, 0], "ok": True} | newer,
    )
    ok(
        "reply-ping-v1-0",
        "a server older than 1.5: no server, no capabilities (assume none beyond 1.0)",
        control_protocol.encode_reply(version="0.1.0", protocol=[1, 0]),
        {"v": [1, 0], "ok": True, "version": "0.1.0", "protocol": [1, 0]},
    )
    entry = {
        "stream": "site1/gate",
        "state": "live",
        "encoding": "jpeg",
        "shape": [480, 640, 3],
        "dtype": "uint8",
        "pixfmt": "bgr24",
        "session": 5_123_456_789_012_345_678,
        "seq": 1234,
        "sessions": 1,
        "frames": 1235,
        "bytes": 48_000_000,
        "fps": 29.97,
        "age_s": 0.012,
        "first_seen": T0,
        "last_seen": T0 + 41_000_000_000,
    }
    stale = entry | {"stream": "site1/old", "state": "stale", "fps": -1.0, "age_s": 12.5}
    streams = {"v": [1, 0], "ok": True, "streams": [entry, stale]}
    ok(
        "reply-streams",
        "a streams reply with a live and a stale stream",
        control_protocol.encode_reply(streams=[entry, stale]),
        streams,
    )
    ok(
        "reply-streams-empty",
        "no streams yet",
        control_protocol.encode_reply(streams=[]),
        {"v": [1, 0], "ok": True, "streams": []},
    )
    stats = {
        "uptime_s": 12.345,
        "frames_in": 100,
        "bytes_in": 4_000_000,
        "frames_out": 100,
        "cache_sends": 2,
        "malformed": 3,
        "disconnects": 0,
        "subscriptions": 2,
        "unsubscriptions": 0,
        "control_requests": 5,
        "control_errors": 1,
        "streams_live": 1,
        "streams_stale": 0,
        "streams_forgotten": 0,
        "malformed_by_kind": {"header": 2, "version": 1},
    }
    ok(
        "reply-stats",
        "a stats reply",
        control_protocol.encode_reply(**stats),
        {"v": [1, 0], "ok": True} | stats,
    )
    error = "unknown control op 'reboot'; known: ping, streams, stats"
    ok(
        "reply-error",
        "the error reply to an unknown op",
        control_protocol.encode_error_reply(error),
        {"v": [1, 0], "ok": False, "error": error},
    )
    ok(
        "reply-minor-extra-key",
        "a newer minor version with a field this client does not know",
        mp({"v": [1, 4], "ok": True, "version": "9.0", "protocol": [1, 4], "features": ["x"]}),
        {"v": [1, 4], "ok": True, "version": "9.0", "protocol": [1, 4], "features": ["x"]},
    )
    ok(
        "reply-ack",
        "v1.1: the sink acknowledges results with delivery ids 41 and 42 (stored)",
        protocol.encode_ack([41, 42]),
        {"v": [1, 1], "ok": True, "ack": [41, 42]},
    )
    bad("reply-ok-missing", "no ok", mp({"v": [1, 0], "streams": []}))
    bad("reply-ok-int", "ok is 1, not true", mp({"v": [1, 0], "ok": 1}))
    bad("reply-error-missing", "ok false without an error string", mp({"v": [1, 0], "ok": False}))
    bad("reply-v-major-2", "major version 2", mp({"v": [2, 0], "ok": True}), "version")
    bad("reply-not-map", "an array", mp([True]))
    bad(
        "reply-trailing-byte",
        "a byte after the map",
        control_protocol.encode_reply(streams=[]) + b"\x00",
    )
    return out


# --- whole ZeroMQ messages: one part, or several ---------------------------------------


def parts(*messages: bytes) -> bytes:
    """A ``parts-`` vector's file: each part as a uint32 big-endian length and its bytes."""
    return b"".join(struct.pack(">I", len(m)) + m for m in messages)


def multipart_vectors() -> list[Vector]:
    """What a receiver makes of a whole ZeroMQ message of the frame or results port: every
    message is ONE frame, so a message of several parts is rejected (kind ``multipart``)
    whatever its parts hold; a one-part message decodes as that part."""
    first = FrameHeader(
        stream="cam1",
        session=7,
        seq=0,
        t_capture=T0,
        t_publish=T0 + 1_000_000,
        encoding="raw",
        shape=(2, 2),
        dtype="uint8",
        pixfmt="gray8",
    )
    frame_msg, view = encoded_frame(first, GRAY_2X2)
    second = protocol.encode_frame(dataclasses.replace(first, seq=1), GRAY_2X2)
    result_msg = mp(result_map())
    return [
        Vector(
            "parts-frame-one",
            "a frame message as a whole ZeroMQ message of one part",
            parts(frame_msg),
            {"decoded": view},
        ),
        Vector(
            "parts-frame-two-valid-frames",
            "two valid frames sent as the two parts of one message (seq 0 and 1)",
            parts(frame_msg, second),
            {"error": "multipart"},
        ),
        Vector(
            "parts-frame-valid-and-empty",
            "a valid frame followed by an empty part",
            parts(frame_msg, b""),
            {"error": "multipart"},
        ),
        Vector(
            "parts-result-two",
            "a valid result followed by a copy of it, as one message of the results port",
            parts(result_msg, result_msg),
            {"error": "multipart"},
        ),
        Vector(
            "parts-result-one",
            "a result as a whole message of one part",
            parts(result_msg),
            {"decoded": result_view(result_map())},
        ),
    ]


# --- all ---------------------------------------------------------------------------------


def work_vectors() -> list[Vector]:
    """Requests on the work port: a worker's ready/leave (v1.2), a feed's feed (v1.6)."""
    out: list[Vector] = []
    W = work_protocol

    def ok(name: str, description: str, request: W.WorkRequest) -> None:
        data = W.encode_work_request(request)
        view = {"op": request.op, "v": list(request.version)}
        out.append(Vector(f"work-{name}", description, data, {"decoded": view}))

    def bad(name: str, description: str, m: dict[str, Any], kind: str = "invalid") -> None:
        out.append(Vector(f"work-{name}", description, mp(m), {"error": kind}))

    feed = {"v": [1, 6], "op": "feed", "streams": ["site1/"], "credit": 4, "received": 41}
    ok("feed", "a feed asks for 4 frames of site1/ after 41 (docs/protocol.md's example)",
       W.WorkRequest(op="feed", streams=("site1/",), credit=4, received=41, name="f1",
                     version=W.VERSION_FEEDS))  # fmt: skip
    ok("ready", "a worker of group detect asks for one frame of cam1 and site1/",
       W.WorkRequest(op="ready", group="detect", streams=("cam1", "site1/"), credit=1,
                     received=0, name="w1"))  # fmt: skip
    ok("leave", "a worker or a feed leaves", W.WorkRequest(op="leave"))
    no_streams = {k: v for k, v in feed.items() if k != "streams"}
    bad("feed-no-streams", "a feed without streams", no_streams)
    bad("feed-empty-streams", "a feed of no stream", feed | {"streams": []})
    bad("feed-negative-credit", "credit -1", feed | {"credit": -1})
    bad("ready-no-group", "ready without a group", feed | {"op": "ready"})
    bad("unknown-op", "op subscribe", feed | {"op": "subscribe"})
    bad("v-major-2", "major version 2", feed | {"v": [2, 0]}, "version")
    return out


def build() -> list[Vector]:
    vectors = (
        frame_vectors() + result_vectors() + control_vectors() + multipart_vectors()
        + work_vectors()
    )  # fmt: skip
    names = [v.name for v in vectors]
    assert len(names) == len(set(names)), "duplicate vector names"
    return vectors


def render(vectors: list[Vector]) -> dict[str, bytes]:
    """File name -> contents, exactly as written to the vectors directory."""
    files: dict[str, bytes] = {}
    index = []
    for v in vectors:
        files[f"{v.name}.bin"] = v.data
        files[f"{v.name}.json"] = (canonical(v.expected) + "\n").encode()
        outcome = "valid" if "decoded" in v.expected else v.expected["error"]
        index.append(
            {"name": v.name, "type": v.type, "expected": outcome, "description": v.description}
        )
    files["index.json"] = (json.dumps(index, indent=1, ensure_ascii=False) + "\n").encode()
    return files


def write(directory: Path) -> int:
    for old in [*directory.glob("*.bin"), *directory.glob("*.json")]:
        old.unlink()
    files = render(build())
    for name, data in files.items():
        (directory / name).write_bytes(data)
    return len(files)


if __name__ == "__main__":
    count = write(HERE)
    print(f"wrote {count} files to {HERE}")
