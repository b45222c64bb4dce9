"""One segment file of a recording: frame messages as they came, length-prefixed, with an index.

No sockets, no OpenCV: bytes to disk and back. The normative description is
``docs/recording.md``::

    file    = magic record*
    magic   = "FBSEG" 0x00 0x01 "\\n"          (8 bytes; 0x01 is the format version)
    record  = length crc message
    length  = u32 big-endian, the message's length in bytes
    crc     = u32 big-endian, CRC-32 (zlib.crc32) of the message
    message = one frame message of the wire protocol, byte for byte (topic, 0x00, major,
              header length, msgpack header, payload): capture time, session, seq and
              meta are kept, a JPEG payload is the producer's JPEG

A segment being written is named ``<start>.fbseg.open`` (``start``: the first frame's
capture time, ns since the epoch, 20 digits, so names sort by time). Closing it writes
its index ``<start>.fbidx`` (``"FBIDX" 0x00 0x01 "\\n"`` then one 32-byte entry per
record: offset, t_capture, session, seq, each u64 big-endian) and renames it to
``<start>.fbseg``. Writes go straight to the file descriptor (no user-space buffer) and
are fsync'd every ``fsync_interval`` seconds, so a ``kill -9`` loses at most the frames
of that interval; every closed segment is complete. A reader stops at the first record
that is truncated or fails its CRC: what a crash leaves at the end of an open segment.
:func:`recover` turns such a leftover into a closed segment.
"""

from __future__ import annotations

import contextlib
import errno
import logging
import os
import struct
import time
import zlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from framebroker.errors import ProtocolError, RecordingError
from framebroker.protocol import FrameHeader, FrameMessage, decode_frame

log = logging.getLogger("framebroker.segment")

SEGMENT_MAGIC = b"FBSEG\x00\x01\n"
INDEX_MAGIC = b"FBIDX\x00\x01\n"
SEGMENT_SUFFIX = ".fbseg"
OPEN_SUFFIX = ".fbseg.open"
INDEX_SUFFIX = ".fbidx"
MAX_RECORD_BYTES = 1 << 30  # a record claiming more is garbage (a torn length field)
DEFAULT_FSYNC_INTERVAL_S = 1.0

_RECORD = struct.Struct(">II")
_ENTRY = struct.Struct(">QQQQ")


@dataclass(frozen=True, slots=True)
class IndexEntry:
    """Where one frame lies in its segment, and the header fields seeking needs."""

    offset: int  # of the record (its length field), from the start of the file
    t_capture: int
    session: int
    seq: int


def segment_name(start_ns: int) -> str:
    return f"{start_ns:020d}{SEGMENT_SUFFIX}"


def start_of(path: Path) -> int:
    """The start time (ns) a segment's name carries."""
    return int(path.name.split(".", 1)[0])


def index_path(segment: Path) -> Path:
    return segment.with_name(segment.name.split(".", 1)[0] + INDEX_SUFFIX)


class SegmentWriter:
    """Appends frame messages to a new open segment; ``close()`` seals it.

    Raises OSError as the file system does (ENOSPC on a full disk): after a failed
    ``append`` the file is cut back to its last whole record, so the segment stays
    readable and may be closed; the caller decides whether to go on.
    """

    def __init__(self, folder: Path, start_ns: int, fsync_interval: float) -> None:
        folder.mkdir(parents=True, exist_ok=True)
        self.path = folder / (segment_name(start_ns) + ".open")
        self.start_ns = start_ns
        self.fsync_interval = fsync_interval
        self.entries: list[IndexEntry] = []
        self._fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        self.size = 0
        try:
            self._write_all([SEGMENT_MAGIC])
            _fsync_dir(folder)
        except OSError:
            os.close(self._fd)
            self.path.unlink(missing_ok=True)
            raise
        self._last_sync = time.monotonic()
        self.closed_path: Path | None = None

    @property
    def frames(self) -> int:
        return len(self.entries)

    def append(self, message: bytes | memoryview, header: FrameHeader) -> int:
        """Write one record; the bytes written. Syncs when the interval has passed."""
        prefix = _RECORD.pack(len(message), zlib.crc32(message))
        offset = self.size
        self._write_all([prefix, message])
        self.entries.append(IndexEntry(offset, header.t_capture, header.session, header.seq))
        self.maybe_sync()
        return self.size - offset

    def maybe_sync(self) -> None:
        """fsync if ``fsync_interval`` seconds passed since the last one."""
        if time.monotonic() - self._last_sync >= self.fsync_interval:
            self.sync()

    def sync(self) -> None:
        os.fdatasync(self._fd)
        self._last_sync = time.monotonic()

    def close(self) -> Path:
        """Sync, write the index, rename to ``<start>.fbseg``; the closed segment's path."""
        if self.closed_path is not None:
            return self.closed_path
        try:
            self.sync()
        finally:
            os.close(self._fd)
        self.closed_path = seal(self.path, self.entries)
        return self.closed_path

    def abandon(self) -> None:
        """Close the descriptor without sealing (the segment stays ``.open``)."""
        if self.closed_path is None:
            with contextlib.suppress(OSError):
                os.close(self._fd)
            self.closed_path = self.path

    def _write_all(self, parts: list[bytes | memoryview]) -> None:
        total = sum(len(p) for p in parts)
        done = 0
        try:
            while done < total:
                done += os.writev(self._fd, _skip(parts, done))
        except OSError:
            if done:
                os.ftruncate(self._fd, self.size)  # never leave half a record behind
            raise
        self.size += total


def _skip(parts: list[bytes | memoryview], done: int) -> list[memoryview]:
    out = []
    for part in parts:
        view = memoryview(part)
        if done >= len(view):
            done -= len(view)
            continue
        out.append(view[done:])
        done = 0
    return out


def seal(open_path: Path, entries: list[IndexEntry]) -> Path:
    """Write ``entries`` as the index and rename the open segment to its closed name."""
    closed = open_path.with_name(open_path.name.removesuffix(".open"))
    index = index_path(closed)
    tmp = index.with_name(index.name + ".tmp")
    with open(tmp, "wb") as f:
        f.write(INDEX_MAGIC)
        f.write(b"".join(_ENTRY.pack(e.offset, e.t_capture, e.session, e.seq) for e in entries))
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, index)
    os.replace(open_path, closed)
    _fsync_dir(open_path.parent)
    return closed


def _fsync_dir(folder: Path) -> None:
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    except OSError as exc:  # some file systems refuse fsync on a directory
        if exc.errno not in (errno.EINVAL, errno.EBADF):
            raise
    finally:
        os.close(fd)


# --- reading -------------------------------------------------------------------------


def scan(path: Path) -> Iterator[tuple[int, bytes]]:
    """(offset, message) of every whole record, in order; stops at a torn or bad record.

    Raises RecordingError when the file is not a segment at all.
    """
    with open(path, "rb") as f:
        if f.read(len(SEGMENT_MAGIC)) != SEGMENT_MAGIC:
            raise RecordingError(f"{path} is not a framebroker segment (bad magic)")
        offset = len(SEGMENT_MAGIC)
        while True:
            prefix = f.read(_RECORD.size)
            if len(prefix) < _RECORD.size:
                return
            length, crc = _RECORD.unpack(prefix)
            if length > MAX_RECORD_BYTES:
                return
            message = f.read(length)
            if len(message) < length or zlib.crc32(message) != crc:
                return
            yield offset, message
            offset += _RECORD.size + length


def read_record(path: Path, offset: int) -> bytes:
    """The message of the record at ``offset`` (RecordingError if it is not a whole record)."""
    with open(path, "rb") as f:
        f.seek(offset)
        prefix = f.read(_RECORD.size)
        if len(prefix) == _RECORD.size:
            length, crc = _RECORD.unpack(prefix)
            message = f.read(min(length, MAX_RECORD_BYTES))
            if len(message) == length and zlib.crc32(message) == crc:
                return message
    raise RecordingError(f"{path}: no whole record at offset {offset}")


def decode_record(path: Path, offset: int, message: bytes) -> FrameMessage:
    """The frame a record holds; RecordingError naming the file for a message that is not one."""
    try:
        return decode_frame(message, payload_check=False)
    except ProtocolError as exc:
        raise RecordingError(f"{path} at offset {offset}: {exc.reason}") from None


def build_index(path: Path) -> list[IndexEntry]:
    """The index of a segment by reading it whole (an open or crashed segment has none)."""
    entries = []
    for offset, message in scan(path):
        h = decode_record(path, offset, message).header
        entries.append(IndexEntry(offset, h.t_capture, h.session, h.seq))
    return entries


def read_index(path: Path) -> list[IndexEntry]:
    """The index of a closed segment from its ``.fbidx``, else built by scanning."""
    index = index_path(path)
    if path.name.endswith(SEGMENT_SUFFIX) and index.exists():
        data = index.read_bytes()
        body = data[len(INDEX_MAGIC) :]
        if data.startswith(INDEX_MAGIC) and len(body) % _ENTRY.size == 0:
            return [IndexEntry(*e) for e in _ENTRY.iter_unpack(body)]
        log.warning("%s is damaged; rebuilding the index from the segment", index)
    return build_index(path)


def recover(open_path: Path) -> Path | None:
    """Seal a segment left ``.open`` by a crash: cut the torn tail, index it, rename it.

    An open segment without a single whole frame is removed (None).
    """
    entries = build_index(open_path)
    if not entries:
        open_path.unlink(missing_ok=True)
        return None
    last = entries[-1]
    end = last.offset + _RECORD.size + len(read_record(open_path, last.offset))
    with open(open_path, "r+b") as f:
        f.truncate(end)
        f.flush()
        os.fsync(f.fileno())
    closed = seal(open_path, entries)
    log.info("recovered %s: %d frames", closed, len(entries))
    return closed
