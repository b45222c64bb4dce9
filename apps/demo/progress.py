"""The demo's live progress: sample the broker and the results database, render it.

Each second the demo takes a :class:`Snapshot`: the broker's stream table (control op
"streams": fps, frames), and from the SQLite results the count per stream and the frame
age at processing start (median / max over the last few seconds). :class:`LiveView`
redraws a compact table in place on a terminal and prints one plain line otherwise.
"""

from __future__ import annotations

import collections
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from framebroker import control
from framebroker.errors import FrameBrokerError, StoreError, TransportError
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.sink.store import AgeSummary, SQLiteStore

RECENT_SAMPLES = 3  # ages are of results stored in the last RECENT_SAMPLES intervals


@dataclass(frozen=True)
class StreamRow:
    stream: str
    state: str = "?"
    fps: float = 0.0
    frames: int = 0


@dataclass(frozen=True)
class Snapshot:
    """What the demo knows at one moment."""

    elapsed_s: float
    streams: tuple[StreamRow, ...] = ()
    broker_error: str | None = None
    results: dict[str, int] = field(default_factory=dict)  # stored per stream
    ages: dict[str, AgeSummary] = field(default_factory=dict)

    @property
    def total_results(self) -> int:
        return sum(self.results.values())

    def stream_names(self) -> list[str]:
        return sorted({row.stream for row in self.streams} | set(self.results))

    def row(self, stream: str) -> StreamRow:
        return next((r for r in self.streams if r.stream == stream), StreamRow(stream))


class Sampler:
    """Reads the broker's control port and the results database (read-only)."""

    def __init__(
        self,
        control_endpoint: str,
        db: Path,
        start_id: int = 0,
        security: ClientSecurity = PLAINTEXT_CLIENT,
    ) -> None:
        self._control = control_endpoint
        self._security = security
        self._db = db
        self._start_id = start_id
        self._store: SQLiteStore | None = None
        self._marks: collections.deque[int] = collections.deque(maxlen=RECENT_SAMPLES)

    def sample(self, elapsed_s: float) -> Snapshot:
        streams, error = self.streams()
        store = self._open()
        if store is None:
            return Snapshot(elapsed_s, streams, error)
        try:
            results = store.counts(after_id=self._start_id)
            recent_from = max(self._start_id, self._marks[0] if self._marks else 0)
            self._marks.append(store.last_id())
            ages = store.ages(after_id=recent_from)
        except StoreError as exc:
            return Snapshot(elapsed_s, streams, error or str(exc))
        return Snapshot(elapsed_s, streams, error, results, ages)

    def totals(self, elapsed_s: float, streams: tuple[StreamRow, ...]) -> Snapshot:
        """The whole run: results and ages of every row stored since the demo started."""
        store = self._open()
        if store is None:
            return Snapshot(elapsed_s, streams)
        try:
            after = self._start_id
            return Snapshot(
                elapsed_s, streams, None, store.counts(after_id=after), store.ages(after_id=after)
            )
        except StoreError as exc:
            return Snapshot(elapsed_s, streams, str(exc))

    def streams(self) -> tuple[tuple[StreamRow, ...], str | None]:
        try:
            reply = control.request(self._control, "streams", timeout=0.5, security=self._security)
        except TransportError:
            return (), "no answer from the broker yet"
        except FrameBrokerError as exc:
            return (), f"broker: {exc}"
        if not reply.get("ok"):
            return (), f"broker: {reply.get('error', 'error reply')}"
        return tuple(_stream_row(m) for m in reply.get("streams", []) if isinstance(m, dict)), None

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None

    def _open(self) -> SQLiteStore | None:
        if self._store is None:
            try:
                self._store = SQLiteStore.open_existing(self._db)
            except StoreError:
                return None  # the sink has not created it yet
        return self._store


def _stream_row(m: dict[str, Any]) -> StreamRow:
    def number(key: str) -> float:
        value = m.get(key, 0)
        return float(value) if isinstance(value, int | float) else 0.0

    return StreamRow(
        str(m.get("stream", "?")), str(m.get("state", "?")), number("fps"), int(number("frames"))
    )


# --- rendering ---------------------------------------------------------------------------


def _ms(ns: float) -> str:
    return f"{ns / 1e6:.1f} ms"


def render_table(snap: Snapshot, title: str) -> list[str]:
    """A compact table: one row per stream."""
    names = snap.stream_names()
    width = max([12, *(len(n) for n in names)])
    lines = [
        f"{title}  {snap.elapsed_s:5.0f} s   results stored: {snap.total_results}",
        f"{'stream':<{width}}  {'state':<6} {'fps':>6} {'frames':>8} {'results':>8}"
        f" {'age median':>11} {'age max':>10}",
    ]
    for name in names:
        row, age = snap.row(name), snap.ages.get(name)
        median, peak = (_ms(age.median_ns), _ms(age.max_ns)) if age else ("-", "-")
        lines.append(
            f"{name:<{width}}  {row.state:<6} {row.fps:>6.1f} {row.frames:>8}"
            f" {snap.results.get(name, 0):>8} {median:>11} {peak:>10}"
        )
    if not names:
        lines.append("(no streams yet)")
    if snap.broker_error:
        lines.append(f"waiting: {snap.broker_error}")
    return lines


def render_line(snap: Snapshot) -> str:
    """The same as one plain line, for logs and pipes."""
    parts = [f"[{snap.elapsed_s:4.0f}s] results {snap.total_results}"]
    for name in snap.stream_names():
        row, age = snap.row(name), snap.ages.get(name)
        text = f"{name} {row.fps:.1f} fps {row.frames} frames"
        if age:
            text += f" age {age.median_ns / 1e6:.0f}/{age.max_ns / 1e6:.0f} ms"
        parts.append(text)
    if snap.broker_error:
        parts.append(f"waiting: {snap.broker_error}")
    return " | ".join(parts)


def render_summary(snap: Snapshot, db: Path) -> list[str]:
    """The final report: frames per stream, results stored, frame age over the run."""
    lines = render_table(snap, "framebroker demo summary:")
    lines[0] = (
        f"framebroker demo summary: ran {snap.elapsed_s:.1f} s, "
        f"results stored: {snap.total_results}"
    )
    lines.append("frame age = how old a frame was when a consumer started on it (median / max)")
    lines.append(f"results database: {db}  (show them: framebroker results --db {db})")
    return lines


class LiveView:
    """Redraws the table in place on a terminal; prints one line per sample otherwise."""

    def __init__(self, out: TextIO, tty: bool, title: str = "framebroker demo") -> None:
        self._out = out
        self._tty = tty
        self._title = title
        self._drawn = 0

    def show(self, snap: Snapshot) -> None:
        if not self._tty:
            self._out.write(render_line(snap) + "\n")
        else:
            lines = [*render_table(snap, self._title), "Ctrl-C stops the demo"]
            up = f"\x1b[{self._drawn}F\x1b[J" if self._drawn else ""
            self._out.write(up + "\n".join(lines) + "\n")
            self._drawn = len(lines)
        self._out.flush()

    def release(self) -> None:
        """Leave what is on screen; the next show() starts below it."""
        self._drawn = 0
