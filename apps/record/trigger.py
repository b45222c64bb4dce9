"""Event recording: a pre-event buffer per stream, opened by results that match a condition.

While a stream is quiet, its frames stay in memory for ``pre`` seconds (by capture time)
and are then forgotten. A result of that stream matching the trigger condition starts an
event: the buffered frames are written, then every frame that follows, until ``post``
seconds pass without another matching result; then the event closes (its segment is
sealed) and the stream is buffered again. Results are read from the sink's database
(:class:`ResultsFeed`, the sink's own reader), only those stored after the recorder
started.
"""

from __future__ import annotations

import collections
import logging
from dataclasses import dataclass, field
from pathlib import Path

from framebroker.errors import StoreError
from framebroker.protocol import FrameHeader
from framebroker.sink.record import ResultRecord
from framebroker.sink.store import SQLiteStore

from .condition import Condition, Subject

log = logging.getLogger("framebroker.record")

BATCH = 5000
Message = bytes | memoryview  # a frame message, as received or converted


@dataclass
class _Stream:
    buffer: collections.deque[tuple[Message, FrameHeader]] = field(
        default_factory=collections.deque
    )
    until: float | None = None  # monotonic time the open event closes, None when quiet


class EventGate:
    """Decides which frames of which stream are written (see the module docstring)."""

    def __init__(self, pre_s: float, post_s: float) -> None:
        self.pre_ns = int(pre_s * 1e9)
        self.post_s = post_s
        self.events = 0
        self._streams: dict[str, _Stream] = {}

    def offer(self, message: Message, header: FrameHeader) -> list[tuple[Message, FrameHeader]]:
        """The frames to write now: this one during an event, none while buffering."""
        state = self._streams.setdefault(header.stream, _Stream())
        if state.until is not None:
            return [(message, header)]
        state.buffer.append((message, header))
        oldest = header.t_capture - self.pre_ns
        while state.buffer and state.buffer[0][1].t_capture < oldest:
            state.buffer.popleft()
        return []

    def trigger(self, stream: str, now: float) -> list[tuple[Message, FrameHeader]]:
        """A matching result for ``stream``: (re)open its event; the buffered frames."""
        state = self._streams.setdefault(stream, _Stream())
        if state.until is None:
            self.events += 1
            log.info("event on stream %r: writing %d buffered frames", stream, len(state.buffer))
        state.until = now + self.post_s
        flushed = list(state.buffer)
        state.buffer.clear()
        return flushed

    def expire(self, now: float) -> list[str]:
        """Streams whose event just closed (quiet for ``post`` seconds)."""
        closed = []
        for stream, state in self._streams.items():
            if state.until is not None and now >= state.until:
                state.until = None
                closed.append(stream)
                log.info("event on stream %r closed after %gs without a match", stream, self.post_s)
        return closed

    def recording(self, stream: str) -> bool:
        state = self._streams.get(stream)
        return state is not None and state.until is not None


class ResultsFeed:
    """New results from the sink's SQLite database that match a condition."""

    def __init__(self, db: Path, condition: Condition) -> None:
        self.db = db
        self.condition = condition
        self.matched = 0
        self._store: SQLiteStore | None = None
        self._last_id: int | None = None

    def poll(self) -> list[ResultRecord]:
        """The matching results stored since the last poll (never raises for a busy db)."""
        try:
            if self._store is None:
                if not self.db.exists():
                    return []
                self._store = SQLiteStore.open_existing(self.db, timeout=1.0)
            if self._last_id is None:
                self._last_id = self._store.last_id()  # only what comes from now on
            records = self._store.query(after_id=self._last_id, limit=BATCH)
        except StoreError as exc:
            log.debug("results database %s not readable yet: %s", self.db, exc)
            self.close()
            return []
        if records:
            self._last_id = records[-1].id
        found = [r for r in records if self.condition.matches(_subject(r))]
        self.matched += len(found)
        return found

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None


def _subject(record: ResultRecord) -> Subject:
    return Subject(dict(record.result), record.stream, record.consumer, record.seq)
