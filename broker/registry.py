"""The stream registry: what the broker knows about every stream, and its newest frame.

Pure bookkeeping (no sockets). For every valid frame the broker calls either
:meth:`StreamRegistry.observe` with a fully decoded header (a new stream, a new session,
or a periodic full check: see :meth:`StreamRegistry.needs_check`) or :meth:`touch` with
the entry found by :meth:`lookup` and the frame's seq (the per-message fast path: a few
attribute updates). It calls :meth:`expire` now and then, :meth:`matching` when a
subscription arrives and :meth:`snapshot` for the control port. Times are
``time.monotonic_ns()`` values; wall-clock times for reports are derived from them when a
snapshot is taken, so a clock jump never distorts ages or rates.

A stream is *live* while its newest frame is at most ``stale_after`` seconds old, else
*stale*. A stale stream's cached frame is released and no longer sent to new subscribers;
after ``forget_after`` seconds (0 = never) the stream leaves the registry.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from framebroker.protocol import FrameHeader, topic_for

log = logging.getLogger("framebroker.broker")

FPS_WINDOW_NS = 1_000_000_000  # rates are measured over windows of about a second
RECHECK_NS = 1_000_000_000  # a stream's headers are fully decoded at least this often
_NS = 1_000_000_000


class StreamEntry:
    """Mutable per-stream state, updated on the broker's hot path."""

    __slots__ = (
        "bytes",
        "cached",
        "check_at",
        "first_seen",
        "fps",
        "frames",
        "header",
        "last_seen",
        "live",
        "seq",
        "session",
        "sessions",
        "stream",
        "topic",
        "win_frames",
        "win_start",
    )

    def __init__(self, header: FrameHeader, now: int) -> None:
        self.stream = header.stream
        self.topic = topic_for(header.stream)
        self.header = header  # the newest fully decoded header
        self.session = header.session
        self.seq = header.seq  # of the newest frame (fast path included)
        self.check_at = now + RECHECK_NS  # when the next full decode is due
        self.frames = 0
        self.bytes = 0
        self.sessions = 1
        self.first_seen = now
        self.last_seen = now
        self.live = True
        self.cached: Any = None  # the newest message, as received (a zmq.Frame)
        self.fps = -1.0  # < 0 until a first window completes
        self.win_start = now  # the frame that opened the current rate window ...
        self.win_frames = -1  # ... and the frames since (the first frame opens it)


@dataclass(frozen=True)
class StreamInfo:
    """One stream as reported on the control port (``streams`` op)."""

    stream: str
    state: str  # "live" | "stale"
    encoding: str
    shape: tuple[int, ...]
    dtype: str
    pixfmt: str
    session: int
    seq: int  # of the newest frame
    sessions: int  # producer sessions seen: > 1 means the producer restarted
    frames: int
    bytes: int
    fps: float
    age_s: float  # since the newest frame
    first_seen: int  # ns since the epoch
    last_seen: int  # ns since the epoch

    def to_map(self) -> dict[str, Any]:
        return {
            "stream": self.stream,
            "state": self.state,
            "encoding": self.encoding,
            "shape": list(self.shape),
            "dtype": self.dtype,
            "pixfmt": self.pixfmt,
            "session": self.session,
            "seq": self.seq,
            "sessions": self.sessions,
            "frames": self.frames,
            "bytes": self.bytes,
            "fps": self.fps,
            "age_s": self.age_s,
            "first_seen": self.first_seen,
            "last_seen": self.last_seen,
        }


class StreamRegistry:
    """Every stream the broker has seen, keyed by stream id."""

    def __init__(self, stale_after: float, forget_after: float = 0.0) -> None:
        self._stale_ns = int(stale_after * _NS)
        self._forget_ns = int(forget_after * _NS)
        self._entries: dict[str, StreamEntry] = {}
        self._by_topic: dict[bytes, StreamEntry] = {}  # topic without its terminator
        self.forgotten = 0

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, stream: object) -> bool:
        return stream in self._entries

    def lookup(self, topic: bytes) -> StreamEntry | None:
        """The stream whose topic (without terminator) is ``topic``, if known."""
        return self._by_topic.get(topic)

    @staticmethod
    def needs_check(entry: StreamEntry | None, header: dict[str, Any], now: int) -> bool:
        """Whether a frame, already through ``peek_frame``, must be fully decoded.

        Yes for a new stream, a header whose ``stream`` or ``session`` differs from the
        stream's last fully decoded one (a restarted producer, or a bad header), a ``seq``
        that is not an integer, and once per ``RECHECK_NS`` per stream in any case.
        """
        return (
            entry is None
            or now >= entry.check_at
            or header.get("session") != entry.session
            or header.get("stream") != entry.stream
            or type(header.get("seq")) is not int
        )

    def touch(self, entry: StreamEntry, seq: int, size: int, now: int, message: Any) -> None:
        """Record one frame of a stream whose header passed the cheap checks (hot path)."""
        if not entry.live:
            entry.live = True
            log.info("stream %s is live again", entry.stream)
        entry.seq = seq
        entry.frames += 1
        entry.bytes += size
        entry.last_seen = now
        entry.cached = message
        if now - entry.win_start >= FPS_WINDOW_NS:
            entry.fps = (entry.win_frames + 1) * _NS / (now - entry.win_start)
            entry.win_start = now
            entry.win_frames = 0
        else:
            entry.win_frames += 1

    def observe(self, header: FrameHeader, size: int, now: int, message: Any) -> StreamEntry:
        """Record one fully decoded frame of ``size`` bytes; ``message`` is cached as newest."""
        entry = self._entries.get(header.stream)
        if entry is None:
            entry = self._entries[header.stream] = StreamEntry(header, now)
            self._by_topic[entry.topic[:-1]] = entry
            log.info(
                "new stream %s: %s %s %s (session %x)",
                header.stream,
                "x".join(map(str, header.shape)),
                header.encoding,
                header.pixfmt,
                header.session,
            )
        elif header.session != entry.session:
            entry.sessions += 1
            log.info("stream %s: producer restarted (session %x)", entry.stream, header.session)
        entry.header = header
        entry.session = header.session
        entry.check_at = now + RECHECK_NS
        self.touch(entry, header.seq, size, now, message)
        return entry

    def is_live(self, entry: StreamEntry, now: int) -> bool:
        return now - entry.last_seen <= self._stale_ns

    def matching(self, prefix: bytes, now: int) -> Iterator[StreamEntry]:
        """Live streams with a cached frame whose topic starts with ``prefix``."""
        for entry in list(self._entries.values()):
            if (
                entry.cached is not None
                and entry.topic.startswith(prefix)
                and self.is_live(entry, now)
            ):
                yield entry

    def expire(self, now: int) -> None:
        """Mark streams stale (releasing their cached frame) and forget very old ones."""
        for entry in list(self._entries.values()):
            idle = now - entry.last_seen
            if entry.live and idle > self._stale_ns:
                entry.live = False
                entry.cached = None
                log.info("stream %s is stale: no frame for %.1fs", entry.stream, idle / _NS)
            if self._forget_ns and idle > self._forget_ns:
                del self._entries[entry.stream]
                del self._by_topic[entry.topic[:-1]]
                self.forgotten += 1
                log.info("forgot stream %s: no frame for %.0fs", entry.stream, idle / _NS)

    def counts(self, now: int) -> tuple[int, int]:
        """(live, stale) stream counts."""
        live = sum(1 for e in list(self._entries.values()) if self.is_live(e, now))
        return live, len(self._entries) - live

    def snapshot(self, now: int | None = None) -> list[StreamInfo]:
        """Every stream, sorted by id. Safe to call from another thread (CPython)."""
        now = time.monotonic_ns() if now is None else now
        wall_offset = time.time_ns() - now  # monotonic -> ns since the epoch
        return [
            self._info(e, now, wall_offset)
            for e in sorted(list(self._entries.values()), key=lambda e: e.stream)
        ]

    def _info(self, entry: StreamEntry, now: int, wall_offset: int) -> StreamInfo:
        h = entry.header
        live = self.is_live(entry, now)
        return StreamInfo(
            stream=entry.stream,
            state="live" if live else "stale",
            encoding=h.encoding,
            shape=h.shape,
            dtype=h.dtype,
            pixfmt=h.pixfmt,
            session=entry.session,
            seq=entry.seq,
            sessions=entry.sessions,
            frames=entry.frames,
            bytes=entry.bytes,
            fps=round(_fps(entry, now), 2) if live else 0.0,
            age_s=round((now - entry.last_seen) / _NS, 3),
            first_seen=entry.first_seen + wall_offset,
            last_seen=entry.last_seen + wall_offset,
        )


def _fps(entry: StreamEntry, now: int) -> float:
    """The rate of the last complete window, or since the window opened if that is long."""
    since = now - entry.win_start
    if entry.fps >= 0 and since < 2 * FPS_WINDOW_NS:
        return entry.fps
    return entry.win_frames * _NS / since if since > 0 and entry.win_frames > 0 else 0.0
