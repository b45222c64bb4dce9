"""ResultsReader: the newest result per (stream, consumer), read from the sink's database.

The sink stores every result in SQLite or PostgreSQL and owns that schema, its writer and
its reader (:mod:`framebroker.sink.store`); the viewer reads through the sink's reader
(:func:`open_reader`, which never creates the file or the table). Every poll reads only
the records added since the last one (``id > last``), keeping the newest result of each
consumer for each stream: what the overlays draw. A viewer without ``--db`` shows no
results. The database may not exist yet (the sink creates it): the reader keeps trying.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from framebroker.errors import StoreError
from framebroker.sink.record import ResultRecord
from framebroker.sink.store import ResultReader, is_server_db, open_reader

log = logging.getLogger("framebroker.viewer")

BACKLOG = 5000  # on first open, look at most this many rows back
BATCH = 5000  # rows read per poll at most


def overlay_map(record: ResultRecord) -> dict[str, Any]:
    """What the viewer's pages get of one result (``/api/streams``, the WebSocket)."""
    return {
        "consumer": record.consumer,
        "seq": record.seq,
        "t_capture": record.t_capture,
        "received_ns": record.received_ns,
        "duration_ms": round(record.duration_ns / 1e6, 2),
        "result": dict(record.result),
    }


class ResultsReader:
    def __init__(self, db: str | Path) -> None:
        self.db = str(db)
        self.latest: dict[str, dict[str, ResultRecord]] = {}  # stream -> consumer -> result
        self.rows_read = 0
        self._last_id: int | None = None
        self._store: ResultReader | None = None

    def _open(self) -> ResultReader | None:
        if self._store is None and (is_server_db(self.db) or Path(self.db).exists()):
            self._store = open_reader(self.db, timeout=1.0)
        return self._store

    def poll(self) -> int:
        """Read new rows; returns how many. Never raises for a missing or busy database."""
        try:
            store = self._open()
            if store is None:
                return 0
            if self._last_id is None:
                self._last_id = max(0, store.last_id() - BACKLOG)
            records = store.query(after_id=self._last_id, limit=BATCH)
        except StoreError as exc:
            log.debug("results database %s not readable yet: %s", self.db, exc)
            self.close()
            return 0
        for record in records:
            self.latest.setdefault(record.stream, {})[record.consumer] = record
            self._last_id = record.id
        self.rows_read += len(records)
        return len(records)

    def for_stream(self, stream: str) -> list[dict[str, Any]]:
        return [overlay_map(r) for _, r in sorted(self.latest.get(stream, {}).items())]

    def close(self) -> None:
        if self._store is not None:
            self._store.close()
            self._store = None
