"""Shared-memory segments on this host: the writer's ring, a reader's mapping, the reaper.

The byte layout is :mod:`framebroker.shm_protocol`'s (``docs/protocol.md``). This module
does the I/O: files under ``/dev/shm`` (``FRAMEBROKER_SHM_DIR`` overrides it, for tests),
mapped with :mod:`mmap` directly. Not :mod:`multiprocessing.shared_memory`: in Python 3.11
every process that attaches a segment registers it with its resource tracker, which
unlinks it when that process exits, so a reader leaving would destroy the writer's
segment (``track=False`` only exists from 3.13).

Ordering (the seqlock): the writer stores the slot's counter odd, then the slot header and
payload, then the counter even; the reader loads the counter, the payload, the counter
again. Each store and load is a separate C call (a numpy 8-byte element access for the
counter, ``memcpy`` for the payload) that the compiler cannot reorder, and x86-64 keeps
stores in order with stores and loads with loads (TSO), which is all a seqlock needs. On
weakly ordered CPUs (arm64) no fence is issued from Python: there the check is not
guaranteed (documented in docs/architecture.md).

Lifetime: a writer unlinks its segment on close. A writer killed with ``kill -9`` leaves
it behind, so every new writer, and a reader that finds its writer gone, runs
:func:`reap`: a segment whose writer process no longer exists (same pid namespace: pid and
start time; another namespace: no heartbeat for ``STALE_S``) is unlinked.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import mmap
import os
import time
from functools import lru_cache
from pathlib import Path

import numpy as np

from framebroker.errors import ProtocolError, ShmError
from framebroker.shm_protocol import (
    FLAG_CLOSED,
    FLAGS_OFFSET,
    HEARTBEAT_OFFSET,
    NEWEST_OFFSET,
    SEGMENT_HEADER_SIZE,
    SEGMENT_NAME_PATTERN,
    SEGMENT_PREFIX,
    SLOT_HEADER_SIZE,
    SegmentHeader,
    ShmLocation,
    pack_slot,
    segment_name,
    slot_size_for,
    unpack_slot,
)

log = logging.getLogger("framebroker.shm")

STALE_S = 5.0  # a writer in another pid namespace with no heartbeat this long is dead
HEARTBEAT_S = 0.5  # writers store a heartbeat at least this often while alive
DEFAULT_SLOTS = 4  # frames kept per stream: a frame is overwritten slots-1 frames later
MODE = 0o600  # segments are readable by the writer's user only (docs/security.md)


def shm_dir() -> Path:
    """Where segments live: ``/dev/shm``, or ``$FRAMEBROKER_SHM_DIR``."""
    return Path(os.environ.get("FRAMEBROKER_SHM_DIR") or "/dev/shm")


@lru_cache(maxsize=8)
def _host_id(directory: str) -> str:
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        device = os.stat(directory).st_dev
    except OSError:
        return ""
    return f"{boot}:{device:x}"


def host_id() -> str:
    """Who can map our segments: the kernel's boot id and the device of the segment
    directory. Containers with a private /dev/shm get another id; ones sharing it (ipc:
    shareable, a shared volume) the same. Empty when there is no usable directory."""
    return _host_id(str(shm_dir()))


def usable() -> bool:
    """Whether this process can create segments here (the directory exists and is writable)."""
    directory = shm_dir()
    return bool(host_id()) and os.access(directory, os.W_OK | os.X_OK)


def _process_start(pid: int) -> int | None:
    """Field 22 of /proc/PID/stat (start time in clock ticks after boot); None if no such pid."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
    except OSError:
        return None
    fields = stat[stat.rfind(b")") + 2 :].split()
    return int(fields[19])


@lru_cache(maxsize=1)
def _pid_namespace() -> int:
    try:
        return os.stat("/proc/self/ns/pid").st_ino
    except OSError:
        return 0


def writer_alive(header: SegmentHeader, heartbeat_ns: int, now_ns: int | None = None) -> bool:
    """Whether a segment's writer still runs (see the module docstring)."""
    if header.flags & FLAG_CLOSED:
        return False
    if header.pid_namespace and header.pid_namespace == _pid_namespace():
        return _process_start(header.writer_pid) == header.writer_start
    now_ns = time.time_ns() if now_ns is None else now_ns
    return now_ns - heartbeat_ns < STALE_S * 1e9


_FLAGS_WORD = (FLAGS_OFFSET - 4) // 8  # the u32 flags share a u64 word with the slot count


def _u64(buffer: np.ndarray, offset: int) -> int:
    return int(buffer[offset // 8])


class SegmentWriter:
    """One producer session's ring of ``slots`` slots for one stream; never waits.

    The first :meth:`write` creates the segment sized for that payload; a larger payload
    later (a change of resolution) makes a new generation and unlinks the old one
    (readers still mapping it keep their pages until they let go). ``close()`` unlinks.
    """

    def __init__(self, stream: str, session: int, slots: int = DEFAULT_SLOTS) -> None:
        if isinstance(slots, bool) or not isinstance(slots, int) or not 2 <= slots <= 64:
            raise ShmError(f"a ring has 2..64 slots, not {slots!r}")
        self.stream = stream
        self.session = session
        self.slots = slots
        self.name = ""
        self.written = 0  # frames written to the current segment
        self.generation = -1
        self._header: SegmentHeader | None = None
        self._mm: mmap.mmap | None = None
        self._words: np.ndarray | None = None  # the segment as u64 words (counters, newest)
        self._bytes: np.ndarray | None = None
        self._beat = 0.0

    def write(self, payload: bytes | memoryview, seq: int, t_capture: int) -> ShmLocation:
        """Put one payload (C-contiguous) in the next slot; where it is, for the descriptor."""
        flat = memoryview(payload).cast("B")
        size = flat.nbytes
        if self._header is None or size > self._header.capacity:
            self._new_generation(size)
        header, words, data = self._header, self._words, self._bytes
        assert header is not None and words is not None and data is not None
        slot = self.written % header.slot_count
        offset = header.slot_offset(slot)
        counter = offset // 8
        count = int(words[counter]) + 2
        words[counter] = count - 1  # odd: being written
        pack_slot(self._mm, offset, seq, size, t_capture)
        start = offset + SLOT_HEADER_SIZE
        data[start : start + size] = np.frombuffer(flat, dtype=np.uint8)
        words[counter] = count  # even: stable again, holding this frame
        self.written += 1
        words[NEWEST_OFFSET // 8] = self.written
        self._store_heartbeat(time.time_ns())
        return ShmLocation(host_id(), self.name, slot, count, size)

    def heartbeat(self) -> None:
        """Tell readers the writer lives; call at least every HEARTBEAT_S when idle."""
        now = time.monotonic()
        if self._words is not None and now - self._beat >= HEARTBEAT_S / 2:
            self._store_heartbeat(time.time_ns())

    def _store_heartbeat(self, now_ns: int) -> None:
        assert self._words is not None
        self._words[HEARTBEAT_OFFSET // 8] = now_ns
        self._beat = time.monotonic()

    def _new_generation(self, size: int) -> None:
        if self.generation < 0:
            reap()
        self.generation += 1
        header = SegmentHeader(
            slot_count=self.slots,
            slot_size=slot_size_for(size),
            capacity=slot_size_for(size) - SLOT_HEADER_SIZE,
            session=self.session,
            writer_pid=os.getpid(),
            writer_start=_process_start(os.getpid()) or 0,
            pid_namespace=_pid_namespace(),
            stream=self.stream,
        )
        name = segment_name(self.stream, self.session, self.generation)
        mm = _create(shm_dir() / name, header.size)
        header.pack_into(mm)
        old = self.name
        self._release(unlink=True)
        self._header, self._mm, self.name, self.written = header, mm, name, 0
        self._words = np.frombuffer(mm, dtype="<u8")
        self._bytes = np.frombuffer(mm, dtype=np.uint8)
        self._store_heartbeat(time.time_ns())
        log.info(
            "stream %r: shared-memory segment %s, %d slots of %d bytes%s",
            self.stream,
            name,
            header.slot_count,
            header.capacity,
            f" (replaces {old})" if old else "",
        )

    def close(self) -> None:
        """Mark the segment closed and unlink it (idempotent)."""
        self._release(unlink=True)
        self._header = None

    def _release(self, *, unlink: bool) -> None:
        mm, words = self._mm, self._words
        if mm is None or words is None:
            return
        words[_FLAGS_WORD] |= np.uint64(FLAG_CLOSED << 32)  # the u32 flags: high half
        path = shm_dir() / self.name
        self._words = self._bytes = None
        self._mm = None
        del words
        if unlink:
            with contextlib.suppress(FileNotFoundError):
                path.unlink()
        with contextlib.suppress(BufferError):
            mm.close()


def _create(path: Path, size: int) -> mmap.mmap:
    """A new file of ``size`` bytes with its pages reserved (ENOSPC now, never SIGBUS later)."""
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL, MODE)
    except OSError as exc:
        raise ShmError(f"cannot create shared-memory segment {path}: {exc}") from exc
    try:
        os.posix_fallocate(fd, 0, size)
        return mmap.mmap(fd, size)
    except OSError as exc:
        with contextlib.suppress(OSError):
            path.unlink()
        raise ShmError(
            f"cannot reserve {size} bytes for {path}: {exc} (is {path.parent} big enough? "
            "Docker gives containers 64 MB: set shm_size)"
        ) from exc
    finally:
        os.close(fd)


class SegmentReader:
    """A read-only mapping of one segment (``open``), for reading slots without a copy."""

    def __init__(self, name: str, mm: mmap.mmap, header: SegmentHeader) -> None:
        self.name = name
        self.header = header
        self._mm: mmap.mmap | None = mm
        self._words = np.frombuffer(mm, dtype="<u8")
        self._view = memoryview(mm)

    @classmethod
    def open(cls, name: str) -> SegmentReader:
        """Map ``name`` read-only; ShmError if it is missing, unreadable or not a segment."""
        if not SEGMENT_NAME_PATTERN.match(name):
            raise ShmError(f"not a framebroker segment name: {name!r}")
        try:
            fd = os.open(shm_dir() / name, os.O_RDONLY)
        except OSError as exc:
            raise ShmError(f"cannot open segment {name}: {exc}") from exc
        try:
            size = os.fstat(fd).st_size
            mm = mmap.mmap(fd, size, prot=mmap.PROT_READ)
        except (OSError, ValueError) as exc:
            raise ShmError(f"cannot map segment {name}: {exc}") from exc
        finally:
            os.close(fd)
        try:
            header = SegmentHeader.unpack_from(mm)
            if header.size > size:
                raise ProtocolError(f"segment header needs {header.size} bytes, file has {size}")
        except ProtocolError as exc:
            mm.close()
            raise ShmError(f"segment {name}: {exc}") from exc
        return cls(name, mm, header)

    def read(self, location: ShmLocation, seq: int) -> memoryview | None:
        """The payload of the frame ``seq`` at ``location`` (a view, no copy), or None when
        the slot no longer (or not yet) holds it: overwritten or being written."""
        header = self.header
        if location.slot >= header.slot_count or location.size > header.capacity:
            return None
        offset = header.slot_offset(location.slot)
        if not self.intact(location):
            return None
        _, slot_seq, size, _ = unpack_slot(self._view, offset)
        if slot_seq != seq or size != location.size or not self.intact(location):
            return None
        start = offset + SLOT_HEADER_SIZE
        return self._view[start : start + size]

    def intact(self, location: ShmLocation) -> bool:
        """Whether the slot still holds the frame the descriptor names (counter unchanged)."""
        if self._mm is None:
            return False
        return _u64(self._words, self.header.slot_offset(location.slot)) == location.count

    def writer_alive(self) -> bool:
        if self._mm is None:
            return False
        flags = int(self._words[_FLAGS_WORD]) >> 32
        header = dataclasses.replace(self.header, flags=flags)
        return writer_alive(header, _u64(self._words, HEARTBEAT_OFFSET))

    def close(self) -> None:
        """Unmap; frames still holding views keep the pages until they are dropped."""
        mm, self._mm = self._mm, None
        if mm is None:
            return
        self._words = np.zeros(0, dtype="<u8")
        self._view.release()  # slices handed to frames keep the pages until dropped
        with contextlib.suppress(BufferError):
            mm.close()


def read_header(path: Path) -> tuple[SegmentHeader, int]:
    """A segment's header and heartbeat, read with pread (no mapping)."""
    fd = os.open(path, os.O_RDONLY)
    try:
        raw = os.pread(fd, SEGMENT_HEADER_SIZE, 0)
    finally:
        os.close(fd)
    header = SegmentHeader.unpack_from(raw)
    return header, int.from_bytes(raw[HEARTBEAT_OFFSET : HEARTBEAT_OFFSET + 8], "little")


def reap(directory: Path | None = None) -> list[str]:
    """Unlink the segments whose writer is gone; the names removed."""
    directory = directory or shm_dir()
    removed: list[str] = []
    try:
        entries = list(os.scandir(directory))
    except OSError:
        return removed
    now = time.time_ns()
    for entry in entries:
        if not entry.name.startswith(SEGMENT_PREFIX) or not SEGMENT_NAME_PATTERN.match(entry.name):
            continue
        try:
            header, heartbeat = read_header(Path(entry.path))
            dead = not writer_alive(header, heartbeat, now)
        except ProtocolError:  # half-made by a writer that died at once, or not ours
            dead = now - entry.stat().st_mtime_ns > STALE_S * 1e9
        except OSError:
            continue
        if dead:
            with contextlib.suppress(OSError):
                os.unlink(entry.path)
                removed.append(entry.name)
    if removed:
        log.info("removed %d shared-memory segment(s) of dead writers: %s", len(removed), removed)
    return removed
