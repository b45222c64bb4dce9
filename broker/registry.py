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

Bounds (``broker/limits.py``): the broker admits no stream beyond ``max_streams``
(:meth:`StreamRegistry.full`); while the registry is full, stale streams are forgotten at
the next :meth:`~StreamRegistry.expire` to make room. The newest frames kept add up to at
most ``cache_budget`` bytes: a frame that would exceed it is not cached (its stream's
older cached frame is released too). An entry keeps its header without ``meta``, so each
stream costs a few hundred bytes besides its cached frame.
"""

from __future__ import annotations

import dataclasses
import logging
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

from framebroker.protocol import FrameHeader, payload_size, topic_for
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.broker")

FPS_WINDOW_NS = 1_000_000_000  # rates are measured over windows of about a second
RECHECK_NS = 1_000_000_000  # a stream's headers are fully decoded at least this often
_NS = 1_000_000_000
_UNLIMITED = 1 << 62


class StreamEntry:
    """Mutable per-stream state, updated on the broker's hot path."""

    __slots__ = (
        "bytes",
        "cached",
        "cached_size",
        "check_at",
        "first_seen",
        "fps",
        "frames",
        "header",
        "last_seen",
        "live",
        "payload_max",
        "payload_min",
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
        self.payload_min, self.payload_max = _payload_range(header)
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
        self.cached_size = 0  # its length, counted against the cache budget
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

    def __init__(
        self,
        stale_after: float,
        forget_after: float = 0.0,
        *,
        max_streams: int | None = None,
        cache_budget: int | None = None,
    ) -> None:
        self._stale_ns = int(stale_after * _NS)
        self._forget_ns = int(forget_after * _NS)
        self._max_streams = _UNLIMITED if max_streams is None else max_streams
        self._cache_budget = _UNLIMITED if cache_budget is None else cache_budget
        self._entries: dict[str, StreamEntry] = {}
        self._by_topic: dict[bytes, StreamEntry] = {}  # topic without its terminator
        self._rlog = RateLimitedLog(log)
        self.forgotten = 0
        self.cached_bytes = 0  # the newest frames kept, all streams (<= cache_budget)
        self.not_cached = 0  # frames not cached because the budget was spent
        self.not_admitted = 0  # frames of new streams refused: max_streams reached

    def __len__(self) -> int:
        return len(self._entries)

    def __contains__(self, stream: object) -> bool:
        return stream in self._entries

    def full(self) -> bool:
        """Whether ``max_streams`` streams are known: a new one is not admitted."""
        return len(self._entries) >= self._max_streams

    def admit(self, stream: str) -> bool:
        """Whether a frame of the new stream ``stream`` may be forwarded and recorded."""
        if len(self._entries) < self._max_streams:
            return True
        self.not_admitted += 1
        self._rlog.warning(
            "stream_limit",
            "dropped a frame of new stream %s: %d streams known already (--max-streams)",
            stream,
            self._max_streams,
        )
        return False

    def refused(self) -> dict[str, int]:
        """What the bounds refused, by reason (for the broker's ``rejected_by_reason``)."""
        counts = {"stream_limit": self.not_admitted, "cache_budget": self.not_cached}
        return {reason: n for reason, n in counts.items() if n}

    def lookup(self, topic: bytes) -> StreamEntry | None:
        """The stream whose topic (without terminator) is ``topic``, if known."""
        return self._by_topic.get(topic)

    @staticmethod
    def needs_check(
        entry: StreamEntry | None, header: dict[str, Any], payload: int, now: int
    ) -> bool:
        """Whether a frame, already through ``peek_frame``, must be fully decoded.

        Yes for a new stream, a header whose ``stream`` or ``session`` differs from the
        stream's last fully decoded one (a restarted producer, or a bad header), a ``seq``
        that is not an integer, a payload of ``payload`` bytes that would not fit the last
        decoded header (raw: its exact size; jpeg: at least the 2-byte marker), and once
        per ``RECHECK_NS`` per stream in any case.
        """
        return (
            entry is None
            or now >= entry.check_at
            or header.get("session") != entry.session
            or header.get("stream") != entry.stream
            or type(header.get("seq")) is not int
            or not entry.payload_min <= payload <= entry.payload_max
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
        cached = self.cached_bytes + size - entry.cached_size
        if cached <= self._cache_budget:
            self.cached_bytes = cached
            entry.cached = message
            entry.cached_size = size
        else:
            self._not_cached(entry, size)
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
        entry.header = dataclasses.replace(header, meta={}) if header.meta else header
        entry.payload_min, entry.payload_max = _payload_range(header)
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
        """Mark streams stale (releasing their cached frame) and forget very old ones.

        While the registry is full, every stale stream is forgotten to make room.
        """
        crowded = self.full()
        for entry in list(self._entries.values()):
            idle = now - entry.last_seen
            if entry.live and idle > self._stale_ns:
                entry.live = False
                self._release(entry)
                log.info("stream %s is stale: no frame for %.1fs", entry.stream, idle / _NS)
            if self._forget_ns and idle > self._forget_ns:
                self._forget(entry)
                log.info("forgot stream %s: no frame for %.0fs", entry.stream, idle / _NS)
            elif crowded and not entry.live:
                self._forget(entry)
                self._rlog.log(
                    logging.INFO,
                    "forget-crowded",
                    "forgot stale stream %s early: the registry is full (max streams %d)",
                    entry.stream,
                    self._max_streams,
                )

    def _forget(self, entry: StreamEntry) -> None:
        self._release(entry)
        del self._entries[entry.stream]
        del self._by_topic[entry.topic[:-1]]
        self.forgotten += 1

    def _release(self, entry: StreamEntry) -> None:
        """Drop ``entry``'s cached frame and give its bytes back to the cache budget."""
        self.cached_bytes -= entry.cached_size
        entry.cached = None
        entry.cached_size = 0

    def _not_cached(self, entry: StreamEntry, size: int) -> None:
        self._release(entry)  # an older frame is no stand-in for the newest
        if not self._cache_budget:
            return  # --cache-budget 0: no last value cache, as configured
        self.not_cached += 1
        self._rlog.warning(
            "cache-budget",
            "frame of stream %s (%d bytes) not cached: the cached frames already use %d of "
            "the %d bytes of --cache-budget",
            entry.stream,
            size,
            self.cached_bytes,
            self._cache_budget,
        )

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


def _payload_range(header: FrameHeader) -> tuple[int, int]:
    """The payload lengths a frame with this header may have (raw: exact; jpeg: >= 2)."""
    size = payload_size(header)
    return (2, _UNLIMITED) if size is None else (size, size)


def _fps(entry: StreamEntry, now: int) -> float:
    """The rate of the last complete window, or since the window opened if that is long."""
    since = now - entry.win_start
    if entry.fps >= 0 and since < 2 * FPS_WINDOW_NS:
        return entry.fps
    return entry.win_frames * _NS / since if since > 0 and entry.win_frames > 0 else 0.0
