"""Where the sink keeps results: one small interface, SQLite and JSON Lines behind it.

::

    ResultStore         add_many(records), query(...), close()  (sink/base.py)
    ├── SQLiteStore     the default: table ``results`` in WAL mode, one transaction per batch
    ├── PostgreSQLStore a server database shared by several sinks (sink/postgres.py)
    ├── JsonLinesStore  one JSON object per line, appended (sink/jsonl.py)
    └── FanOutStore     writes to several stores, reads from the first

This module is the one home of the SQLite schema (``SCHEMA``, documented in
docs/protocol.md; sink/postgres.py holds the same table for PostgreSQL): the sink writes
through :func:`open_writer`, and everything that reads a results database (``framebroker
results``, the viewer, the demo, the tests) reads through :func:`open_reader`, which never
creates a file or a table. ``--db`` is a file path (SQLite) or a ``postgresql://`` URL.
The readers' SQL is written once for both databases in sink/sql.py; nothing else knows
the table's columns.

Rows hold plain numbers (ns since the epoch, ns durations, ``age_ns = t_start -
t_capture``) so questions like "results per stream" or "median frame age" are one query.
The processor's result map is stored as JSON text.
"""

from __future__ import annotations

import sqlite3
import threading
from collections.abc import Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from pathlib import Path
from typing import Any

from framebroker.errors import StoreError

from .base import (
    AgeSummary,
    ResultReader,
    ResultStore,
    is_server_db,
    stream_matches,
    summarize_ages,
)
from .postgres import PostgreSQLStore
from .record import ResultRecord, dumps
from .sql import SQLReads, record_from_row

__all__ = [  # the interface lives in .base; importers of this module find it here too
    "AgeSummary",
    "FanOutStore",
    "ResultReader",
    "ResultStore",
    "SQLiteStore",
    "is_server_db",
    "open_reader",
    "open_writer",
    "record_from_row",
    "stream_matches",
    "summarize_ages",
]

SCHEMA_VERSION = 2  # 2: one row per (consumer, stream, session, seq)
SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id          INTEGER PRIMARY KEY,
    received_ns INTEGER NOT NULL,
    consumer    TEXT    NOT NULL,
    stream      TEXT    NOT NULL,
    session     INTEGER NOT NULL,
    seq         INTEGER NOT NULL,
    t_capture   INTEGER NOT NULL,
    t_start     INTEGER NOT NULL,
    duration_ns INTEGER NOT NULL,
    age_ns      INTEGER NOT NULL,
    result      TEXT    NOT NULL
);
CREATE INDEX IF NOT EXISTS results_stream ON results (stream, id);
"""
# Idempotent storage: a result delivered again (after a lost acknowledgement) is ignored.
UNIQUE_KEY = """
CREATE UNIQUE INDEX IF NOT EXISTS results_key ON results (consumer, stream, session, seq);
"""
_DEDUPLICATE = """
DELETE FROM results WHERE id NOT IN
    (SELECT min(id) FROM results GROUP BY consumer, stream, session, seq);
"""


def open_writer(db: str | Path) -> ResultStore:
    """The sink's store for ``--db``: a PostgreSQL URL or a SQLite file (created)."""
    if is_server_db(db):
        return PostgreSQLStore(str(db))
    return SQLiteStore(db)


def open_reader(db: str | Path, *, timeout: float = 5.0) -> ResultReader:
    """A reader of the results ``db`` names; never creates anything (StoreError if absent)."""
    if is_server_db(db):
        return PostgreSQLStore.open_existing(str(db), timeout=timeout)
    return SQLiteStore.open_existing(db, timeout=timeout)


class SQLiteStore(SQLReads, ResultStore):
    """Results in one SQLite table (see SCHEMA), WAL mode so readers never block the sink."""

    placeholder = "?"

    def __init__(self, path: str | Path, *, create: bool = True, timeout: float = 5.0) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            if create:
                self._conn = _connect(self.path, timeout)
                self._init_schema()
            else:
                self._conn = _connect(_existing_uri(self.path), timeout, uri=True)
                self._check_schema()
        except sqlite3.Error as exc:
            raise StoreError(f"cannot open results database {self.path}: {exc}") from exc

    @classmethod
    def open_existing(cls, path: str | Path, *, timeout: float = 5.0) -> SQLiteStore:
        """The reader: open a database the sink created, never creating one.

        StoreError if there is no such file, or no results table in it yet (a sink that
        has just created the file); readers that may start first retry.
        """
        if str(path) != ":memory:" and not Path(path).is_file():
            raise StoreError(
                f"no results database at {path} (start `framebroker sink --db {path}` "
                "first, or pass --db / FRAMEBROKER_DB)"
            )
        return cls(path, create=False, timeout=timeout)

    def _init_schema(self) -> None:
        self._conn.execute("PRAGMA journal_mode=WAL")
        self._conn.execute("PRAGMA synchronous=NORMAL")
        self._conn.executescript(SCHEMA)
        try:
            self._conn.executescript(UNIQUE_KEY)
        except sqlite3.IntegrityError:  # a version 1 database holding duplicates
            self._conn.executescript(_DEDUPLICATE + UNIQUE_KEY)
        self._conn.execute(f"PRAGMA user_version={SCHEMA_VERSION}")

    def _check_schema(self) -> None:
        row = self._conn.execute(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'results'"
        ).fetchone()
        if row is None:
            self._conn.close()
            raise StoreError(f"{self.path} is not a framebroker results database")

    def add_many(self, records: Sequence[ResultRecord]) -> list[ResultRecord]:
        rows = [
            (
                r.received_ns,
                r.consumer,
                r.stream,
                r.session,
                r.seq,
                r.t_capture,
                r.t_start,
                r.duration_ns,
                r.age_ns,
                dumps(r.result),
            )
            for r in records
        ]
        sql = (
            "INSERT OR IGNORE INTO results (received_ns, consumer, stream, session, seq,"
            " t_capture, t_start, duration_ns, age_ns, result)"
            " VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        )
        new: list[ResultRecord] = []
        with self._lock, self._errors("write to"):
            self._conn.execute("BEGIN")
            try:
                for record, row in zip(records, rows, strict=True):
                    if self._conn.execute(sql, row).rowcount:
                        new.append(record)
            except BaseException:
                self._conn.execute("ROLLBACK")
                raise
            self._conn.execute("COMMIT")
        return new

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        with self._lock, self._errors("read"):
            return self._conn.execute(sql, params).fetchall()

    def _errors(self, action: str) -> AbstractContextManager[None]:
        return _wrap_errors(f"cannot {action} results database {self.path}")


@contextmanager
def _wrap_errors(message: str) -> Iterator[None]:
    """Turn sqlite3.Error into StoreError carrying ``message``."""
    try:
        yield
    except sqlite3.Error as exc:
        raise StoreError(f"{message}: {exc}") from exc


def _connect(target: str, timeout: float, uri: bool = False) -> sqlite3.Connection:
    # Autocommit mode: add_many opens its own transactions. One connection is shared by
    # the threads of one store, serialized by the store's lock.
    return sqlite3.connect(
        target, timeout=timeout, isolation_level=None, check_same_thread=False, uri=uri
    )


def _existing_uri(path: str) -> str:
    if path == ":memory:":
        return "file::memory:"
    return Path(path).absolute().as_uri() + "?mode=rw"  # mode=rw never creates a file


class FanOutStore(ResultStore):
    """Writes every batch to each store in turn; reads from the first."""

    def __init__(self, stores: Sequence[ResultStore]) -> None:
        if not stores:
            raise ValueError("FanOutStore needs at least one store")
        self.stores = tuple(stores)
        self.background_writes = self.stores[0].background_writes

    def add_many(self, records: Sequence[ResultRecord]) -> Sequence[ResultRecord]:
        """The first store decides which records are new; only those go to the others."""
        new = self.stores[0].add_many(records)
        for store in self.stores[1:]:
            store.add_many(new)
        return new

    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]:
        return self.stores[0].query(stream=stream, after_id=after_id, limit=limit, newest=newest)

    def close(self) -> None:
        for store in self.stores:
            store.close()
