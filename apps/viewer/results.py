"""ResultsReader: the newest result per (stream, consumer), read from the sink's database.

The sink stores every result in SQLite (table ``results``, documented in
docs/protocol.md). The viewer opens that file (never creating it, only reading) and, every
poll, reads only the rows added since the last one (``id > last``), keeping the newest
result of each consumer for each stream: what the overlays draw. A viewer without ``--db`` shows no
results. The database may not exist yet (the sink creates it): the reader keeps trying.
"""

from __future__ import annotations

import json
import logging
import sqlite3
from dataclasses import dataclass
from pathlib import Path
from typing import Any

log = logging.getLogger("framebroker.viewer")

BACKLOG = 5000  # on first open, look at most this many rows back
BATCH = 5000  # rows read per poll at most


@dataclass(frozen=True)
class LatestResult:
    consumer: str
    stream: str
    seq: int
    t_capture: int
    received_ns: int
    duration_ns: int
    result: Any

    def to_map(self) -> dict[str, Any]:
        return {
            "consumer": self.consumer,
            "seq": self.seq,
            "t_capture": self.t_capture,
            "received_ns": self.received_ns,
            "duration_ms": round(self.duration_ns / 1e6, 2),
            "result": self.result,
        }


class ResultsReader:
    def __init__(self, db: str | Path) -> None:
        self.db = Path(db)
        self.latest: dict[str, dict[str, LatestResult]] = {}  # stream -> consumer -> result
        self.rows_read = 0
        self._last_id: int | None = None
        self._conn: sqlite3.Connection | None = None

    def _open(self) -> sqlite3.Connection | None:
        if self._conn is None:
            if not self.db.exists():
                return None
            uri = f"{self.db.resolve().as_uri()}?mode=rw"  # never creates; only SELECTs
            self._conn = sqlite3.connect(uri, uri=True, timeout=1.0, check_same_thread=False)
        return self._conn

    def poll(self) -> int:
        """Read new rows; returns how many. Never raises for a missing or busy database."""
        try:
            conn = self._open()
            if conn is None:
                return 0
            if self._last_id is None:
                (top,) = conn.execute("SELECT COALESCE(MAX(id), 0) FROM results").fetchone()
                self._last_id = max(0, int(top) - BACKLOG)
            rows = conn.execute(
                "SELECT id, consumer, stream, seq, t_capture, received_ns, duration_ns, result "
                "FROM results WHERE id > ? ORDER BY id LIMIT ?",
                (self._last_id, BATCH),
            ).fetchall()
        except sqlite3.Error as exc:
            log.debug("results database %s not readable yet: %s", self.db, exc)
            self.close()
            return 0
        for row_id, consumer, stream, seq, t_capture, received_ns, duration_ns, text in rows:
            try:
                result = json.loads(text)
            except ValueError:
                result = text
            self.latest.setdefault(stream, {})[consumer] = LatestResult(
                consumer, stream, seq, t_capture, received_ns, duration_ns, result
            )
            self._last_id = row_id
        self.rows_read += len(rows)
        return len(rows)

    def for_stream(self, stream: str) -> list[dict[str, Any]]:
        return [r.to_map() for _, r in sorted(self.latest.get(stream, {}).items())]

    def close(self) -> None:
        if self._conn is not None:
            self._conn.close()
            self._conn = None
