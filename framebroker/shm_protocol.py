"""The same-host shared-memory path, protocol v1.4: segment layout and descriptor messages.

Pure: no sockets, no OpenCV, no mmap (the functions take any writable/readable buffer).
The normative description, precise enough for a C client, is ``docs/protocol.md``
("Shared memory"). In short::

    /dev/shm/fb.<stream with / as ,>.<session hex>.<generation>
      segment header   SEGMENT_HEADER_SIZE bytes (magic, layout, slot count and size,
                       session, writer pid / start time / pid namespace, heartbeat,
                       newest count, stream id)
      slot 0 .. N-1    each SLOT_HEADER_SIZE bytes of header (seqlock counter, seq, size,
                       t_capture) then the payload, exactly as a frame message carries it

A writer never waits for a reader: to write slot ``i`` it makes the slot's counter odd,
writes, then makes it even again (a seqlock). Only a *descriptor* crosses ZeroMQ, on the
system topic ``$shm/<stream>\\0``: the frame's header plus where its payload is (host id,
segment, slot, the even counter value the slot has while it holds this frame, size).
A reader accepts the payload only while the slot's counter still equals that value.
The broker also sends *network notices* on the same topic for streams whose pixels
travel only as ordinary frame messages, so a consumer learns per stream which path to use.
"""

from __future__ import annotations

import re
import struct
from dataclasses import dataclass
from typing import Any

import msgpack

from framebroker.errors import ProtocolError, VersionError
from framebroker.protocol import (
    MAX_HEADER_BYTES,
    MAX_STREAM_ID_BYTES,
    TOPIC_END,
    FrameHeader,
    subscription_for,
    validate_stream_id,
)
from framebroker.wire import PROTOCOL_MAJOR, str_field, uint_field, unpack

VERSION_SHM = (PROTOCOL_MAJOR, 4)  # v1.4: descriptors and network notices on $shm/
SHM_TOPIC_PREFIX = b"$shm/"
# The broker answers every subscription to this topic with a beacon on it: a consumer
# learns that its publisher speaks v1.4 (sends network notices) or, hearing nothing, that
# it must subscribe to the frames themselves (a direct PUB, an older broker).
BEACON_TOPIC = b"$shm\x00"
SEGMENT_PREFIX = "fb."  # every segment name starts with this (the reaper looks only there)
SEGMENT_NAME_PATTERN = re.compile(r"fb\.[A-Za-z0-9_.,\-]+\.[0-9a-f]{16}\.[0-9]+\Z")

MAGIC = b"FBSHM\x00\x01\x00"
LAYOUT = 1
SEGMENT_HEADER_SIZE = 4096  # one page: slots start page-aligned
SLOT_HEADER_SIZE = 64  # one cache line: the payload starts 64-byte aligned
SLOT_ALIGN = 4096
FLAG_CLOSED = 1  # the writer closed the segment cleanly (it is being unlinked)

# segment header: magic, layout, header size, slot count, flags, slot size, capacity,
# session, writer pid, writer start time (clock ticks after boot), pid namespace inode
_SEGMENT = struct.Struct("<8sIIIIQQQQQQ")
HEARTBEAT_OFFSET = 72  # u64, ns since the epoch, stored by the writer at least every second
NEWEST_OFFSET = 80  # u64, frames completed so far; the newest is in slot (newest-1) % count
STREAM_OFFSET = 88  # u16 length, then the stream id's UTF-8 bytes
FLAGS_OFFSET = 20  # u32 inside the fixed part
_U16 = struct.Struct("<H")
# slot header: seqlock counter, seq, payload size, t_capture (all u64), then reserved bytes
COUNTER_OFFSET = 0
_SLOT = struct.Struct("<QQQQ")


@dataclass(frozen=True, slots=True)
class SegmentHeader:
    """The fixed part of a segment, written once by its writer before any slot."""

    slot_count: int
    slot_size: int  # bytes per slot, header included, a multiple of SLOT_ALIGN
    capacity: int  # largest payload a slot holds
    session: int
    writer_pid: int
    writer_start: int  # the writer's start time (field 22 of /proc/PID/stat): pid reuse guard
    pid_namespace: int  # inode of the writer's /proc/self/ns/pid: whose pids these are
    stream: str
    flags: int = 0

    @property
    def size(self) -> int:
        """The whole segment's length in bytes."""
        return SEGMENT_HEADER_SIZE + self.slot_count * self.slot_size

    def slot_offset(self, slot: int) -> int:
        """Where slot ``slot`` starts (its header; the payload follows SLOT_HEADER_SIZE later)."""
        return SEGMENT_HEADER_SIZE + slot * self.slot_size

    def pack_into(self, buffer: Any) -> None:
        stream = self.stream.encode()
        _SEGMENT.pack_into(
            buffer,
            0,
            MAGIC,
            LAYOUT,
            SEGMENT_HEADER_SIZE,
            self.slot_count,
            self.flags,
            self.slot_size,
            self.capacity,
            self.session,
            self.writer_pid,
            self.writer_start,
            self.pid_namespace,
        )
        _U16.pack_into(buffer, STREAM_OFFSET, len(stream))
        buffer[STREAM_OFFSET + 2 : STREAM_OFFSET + 2 + len(stream)] = stream

    @classmethod
    def unpack_from(cls, buffer: Any) -> SegmentHeader:
        """Read a segment header; ProtocolError if it is not one of layout 1 (or is cut)."""
        if len(buffer) < SEGMENT_HEADER_SIZE:
            raise ProtocolError(f"segment of {len(buffer)} bytes is shorter than its header")
        magic, layout, hsize, count, flags, slot_size, capacity, *rest = _SEGMENT.unpack_from(
            buffer, 0
        )
        if magic != MAGIC or layout != LAYOUT or hsize != SEGMENT_HEADER_SIZE:
            raise ProtocolError("not a framebroker segment of layout 1 (bad magic or layout)")
        (length,) = _U16.unpack_from(buffer, STREAM_OFFSET)
        if not 0 < length <= MAX_STREAM_ID_BYTES:
            raise ProtocolError(f"segment header has a stream id of {length} bytes")
        if count < 1 or slot_size % SLOT_ALIGN or capacity > slot_size - SLOT_HEADER_SIZE:
            raise ProtocolError(
                f"segment header has {count} slots of {slot_size} bytes for {capacity}"
            )
        try:
            stream = bytes(buffer[STREAM_OFFSET + 2 : STREAM_OFFSET + 2 + length]).decode()
        except UnicodeDecodeError:
            raise ProtocolError("segment header's stream id is not UTF-8") from None
        session, pid, start, pidns = rest
        return cls(count, slot_size, capacity, session, pid, start, pidns, stream, flags)


def slot_size_for(capacity: int) -> int:
    """The slot size (page multiple) that holds a payload of ``capacity`` bytes."""
    need = SLOT_HEADER_SIZE + capacity
    return -(-need // SLOT_ALIGN) * SLOT_ALIGN


def pack_slot(buffer: Any, offset: int, seq: int, size: int, t_capture: int) -> None:
    """The slot header fields after the counter (the writer holds the counter odd)."""
    struct.pack_into("<QQQ", buffer, offset + 8, seq, size, t_capture)


def unpack_slot(buffer: Any, offset: int) -> tuple[int, int, int, int]:
    """(counter, seq, size, t_capture) of the slot at ``offset``."""
    counter, seq, size, t_capture = _SLOT.unpack_from(buffer, offset)
    return counter, seq, size, t_capture


def segment_name(stream: str, session: int, generation: int) -> str:
    """``fb.<stream, / written ,>.<session as 16 hex digits>.<generation>``: one segment per
    producer session (and a new generation when the frames outgrow the slots)."""
    validate_stream_id(stream)
    return f"{SEGMENT_PREFIX}{stream.replace('/', ',')}.{session:016x}.{generation}"


# --- descriptors --------------------------------------------------------------------------


@dataclass(frozen=True, slots=True)
class ShmLocation:
    """Where a frame's payload is: which host (shared-memory namespace), segment and slot."""

    host: str  # see framebroker.shm.host_id(): boot id and /dev/shm device
    segment: str  # name under /dev/shm
    slot: int
    count: int  # the slot's (even) seqlock counter while it holds this frame
    size: int  # payload bytes

    def to_map(self) -> dict[str, Any]:
        return {
            "host": self.host,
            "segment": self.segment,
            "slot": self.slot,
            "count": self.count,
            "size": self.size,
        }


@dataclass(frozen=True, slots=True)
class ShmDescriptor:
    """A frame whose payload is in a shared-memory slot: its header and the slot."""

    header: FrameHeader
    location: ShmLocation

    @property
    def stream(self) -> str:
        return self.header.stream


@dataclass(frozen=True, slots=True)
class NetworkNotice:
    """The broker's word that ``stream``'s pixels travel as ordinary frame messages."""

    stream: str


def descriptor_topic(stream: str) -> bytes:
    """``$shm/<stream>\\0``: the topic of one stream's descriptors and notices."""
    return SHM_TOPIC_PREFIX + validate_stream_id(stream).encode() + TOPIC_END


def descriptor_subscription(pattern: str) -> bytes:
    """The SUB prefix for the descriptors of the streams a pattern selects."""
    return SHM_TOPIC_PREFIX + subscription_for(pattern)


def is_descriptor_message(data: bytes | memoryview) -> bool:
    return bytes(data[: len(SHM_TOPIC_PREFIX)]) == SHM_TOPIC_PREFIX


def _message(stream: str, body: dict[str, Any]) -> bytes:
    packed = msgpack.packb(body, use_bin_type=True)
    return b"".join(
        (descriptor_topic(stream), bytes((PROTOCOL_MAJOR,)), struct.pack(">I", len(packed)), packed)
    )


def encode_descriptor(header: FrameHeader, location: ShmLocation) -> bytes:
    """The descriptor message of one frame written to shared memory."""
    body = header.to_map()
    body["v"] = list(VERSION_SHM)
    body["shm"] = location.to_map()
    return _message(header.stream, body)


def encode_beacon() -> bytes:
    """The broker's answer to a subscription to BEACON_TOPIC."""
    packed = msgpack.packb({"v": list(VERSION_SHM)})
    return b"".join(
        (BEACON_TOPIC, bytes((PROTOCOL_MAJOR,)), struct.pack(">I", len(packed)), packed)
    )


def is_beacon(data: bytes | memoryview) -> bool:
    return bytes(data[: len(BEACON_TOPIC)]) == BEACON_TOPIC


def encode_network_notice(stream: str) -> bytes:
    """The broker's network notice for ``stream``."""
    return _message(stream, {"v": list(VERSION_SHM), "stream": stream, "net": True})


def decode_descriptor(data: bytes | memoryview) -> ShmDescriptor | NetworkNotice:
    """Decode a ``$shm/`` message; ProtocolError for anything malformed."""
    view = memoryview(data)
    if not is_descriptor_message(view):
        raise ProtocolError("not a descriptor message (no $shm/ topic)", view, kind="header")
    start = len(SHM_TOPIC_PREFIX)
    head = bytes(view[start : start + MAX_STREAM_ID_BYTES + 1])
    end = head.find(TOPIC_END)
    if end <= 0:
        raise ProtocolError("descriptor has no topic terminator", view, kind="no_terminator")
    topic = head[:end]
    body_at = start + end + 1 + 5
    if len(view) < body_at or view[start + end + 1] != PROTOCOL_MAJOR:
        raise VersionError("descriptor of another protocol major version (or cut)", view)
    (hlen,) = struct.unpack_from(">I", view, start + end + 2)
    if hlen > MAX_HEADER_BYTES or body_at + hlen != len(view):
        raise ProtocolError(f"descriptor length {hlen} does not fit", view, kind="truncated")
    m = unpack(view[body_at:])
    if not isinstance(m, dict):
        raise ProtocolError("descriptor body is not a map", view, kind="header")
    try:
        result = _from_map(m)
    except KeyError as exc:
        raise ProtocolError(f"descriptor lacks {exc.args[0]!r}", view, kind="header") from None
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, view, kind="header") from None
    if result.stream.encode() != topic:
        raise ProtocolError("descriptor topic and stream differ", view, kind="topic_mismatch")
    return result


def _from_map(m: dict[str, Any]) -> ShmDescriptor | NetworkNotice:
    if m.get("net") is True:
        return NetworkNotice(validate_stream_id(str_field(m, "stream")))
    shm = m["shm"]
    if not isinstance(shm, dict):
        raise ProtocolError("descriptor field 'shm' must be a map")
    segment = str_field(shm, "segment")
    if not SEGMENT_NAME_PATTERN.match(segment):
        raise ProtocolError(f"descriptor names no framebroker segment: {segment!r}")
    location = ShmLocation(
        host=str_field(shm, "host"),
        segment=segment,
        slot=uint_field(shm, "slot"),
        count=uint_field(shm, "count"),
        size=uint_field(shm, "size"),
    )
    if location.count % 2 or not location.count:
        raise ProtocolError(f"descriptor count {location.count} is not a stable (even) value")
    header = FrameHeader.from_map({k: v for k, v in m.items() if k != "shm"})
    return ShmDescriptor(header, location)


def peek_descriptor_stream(data: bytes | memoryview) -> bytes | None:
    """The stream id of a ``$shm/`` message, cheaply (None if it has none)."""
    head = bytes(data[len(SHM_TOPIC_PREFIX) : len(SHM_TOPIC_PREFIX) + MAX_STREAM_ID_BYTES + 1])
    end = head.find(TOPIC_END)
    return head[:end] if end > 0 else None
