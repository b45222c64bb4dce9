"""Where the sink keeps results: one small interface, SQLite and JSON Lines behind it.

::

    ResultStore         add_many(records), query(...), close()
    ├── SQLiteStore     the default: table ``results`` in WAL mode, one transaction per batch
    ├── PostgreSQLStore a server database shared by several sinks (sink/postgres.py)
    ├── JsonLinesStore  one JSON object per line, appended (sink/jsonl.py)
    └── FanOutStore     writes to several stores, reads from the first

This module is the one home of the SQLite schema (``SCHEMA``, documented in
docs/protocol.md; sink/postgres.py holds the same table for PostgreSQL): the sink writes
through :func:`open_writer`, and everything that reads a results database (``framebroker
results``, the viewer, the demo, the tests) reads through :func:`open_reader`, which never
creates a file or a table. ``--db`` is a file path (SQLite) or a ``postgresql://`` URL.
Nothing else knows the table's columns.

Rows hold plain numbers (ns since the epoch, ns durations, ``age_ns = t_start -
t_capture``) so questions like "results per stream" or "median frame age" are one query.
The processor's result map is stored as JSON text.
"""

from __future__ import annotations

import json
import sqlite3
import statistics
import threading
from abc import ABC, abstractmethod
from collections.abc import Iterable, Iterator, Sequence
from contextlib import AbstractContextManager, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from framebroker.errors import StoreError

from .record import ResultRecord, dumps

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
_COLUMNS = (
    "id, received_ns, consumer, stream, session, seq, t_capture, t_start, duration_ns, result"
)


def stream_matches(pattern: str | None, stream: str) -> bool:
    """Stream patterns as on the CLI: ``cam1`` exactly, ``site1/`` or ``site1/*`` a group."""
    if pattern in (None, "", "*"):
        return True
    assert pattern is not None
    if pattern.endswith("*"):
        return stream.startswith(pattern[:-1])
    if pattern.endswith("/"):
        return stream.startswith(pattern)
    return stream == pattern


@dataclass(frozen=True, slots=True)
class AgeSummary:
    """Frame ages at processing start for one stream (ns)."""

    count: int
    median_ns: float
    max_ns: int


def summarize_ages(pairs: Iterable[tuple[str, int]]) -> dict[str, AgeSummary]:
    """(stream, age_ns) pairs -> per-stream count, median and max, sorted by stream."""
    ages: dict[str, list[int]] = {}
    for stream, age in pairs:
        ages.setdefault(stream, []).append(age)
    return {
        stream: AgeSummary(len(values), statistics.median(values), max(values))
        for stream, values in sorted(ages.items())
    }


class ResultStore(ABC):
    """Somewhere results go. Implementations are safe to call from several threads."""

    @abstractmethod
    def add_many(self, records: Sequence[ResultRecord]) -> Sequence[ResultRecord]:
        """Store ``records`` durably, all or nothing; raises StoreError.

        Returns the records that were new (a store keyed by consumer, stream, session and
        seq ignores ones it already holds; others return all of them).
        """

    @abstractmethod
    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]:
        """Records with id > ``after_id`` matching the ``stream`` pattern, oldest first.

        ``limit`` caps the count: the oldest ones, or with ``newest`` the newest ones.
        """

    @abstractmethod
    def close(self) -> None:
        """Flush and release; idempotent."""


class ResultReader(Protocol):
    """What readers ask of a results database (SQLiteStore and PostgreSQLStore answer)."""

    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]: ...

    def last_id(self) -> int: ...

    def counts(self, *, after_id: int = 0) -> dict[str, int]: ...

    def ages(self, *, after_id: int = 0, since_ns: int | None = None) -> dict[str, AgeSummary]: ...

    def close(self) -> None: ...


def is_server_db(db: str | Path) -> bool:
    """True when ``db`` names a PostgreSQL server (``postgresql://...``), not a file."""
    return str(db).startswith(("postgresql://", "postgres://"))


def open_writer(db: str | Path) -> ResultStore:
    """The sink's store for ``--db``: a PostgreSQL URL or a SQLite file (created)."""
    if is_server_db(db):
        from .postgres import PostgreSQLStore

        return PostgreSQLStore(str(db))
    return SQLiteStore(db)


def open_reader(db: str | Path, *, timeout: float = 5.0) -> ResultReader:
    """A reader of the results ``db`` names; never creates anything (StoreError if absent)."""
    if is_server_db(db):
        from .postgres import PostgreSQLStore

        return PostgreSQLStore.open_existing(str(db), timeout=timeout)
    return SQLiteStore.open_existing(db, timeout=timeout)


class SQLiteStore(ResultStore):
    """Results in one SQLite table (see SCHEMA), WAL mode so readers never block the sink."""

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

    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]:
        where, params = _where(stream, after_id)
        sql = f"SELECT {_COLUMNS} FROM results WHERE {where}"
        if limit is not None:
            order = "DESC" if newest else "ASC"
            sql = f"SELECT * FROM ({sql} ORDER BY id {order} LIMIT ?) ORDER BY id"
            params.append(limit)
        else:
            sql += " ORDER BY id"
        with self._lock, self._errors("read"):
            rows = self._conn.execute(sql, params).fetchall()
        return [record_from_row(row) for row in rows]

    def last_id(self) -> int:
        """The highest row id so far (0 for an empty table)."""
        with self._lock, self._errors("read"):
            row = self._conn.execute("SELECT max(id) FROM results").fetchone()
        return int(row[0] or 0)

    def counts(self, *, after_id: int = 0) -> dict[str, int]:
        """Results per stream with id > ``after_id``."""
        sql = "SELECT stream, count(*) FROM results WHERE id > ? GROUP BY stream ORDER BY stream"
        with self._lock, self._errors("read"):
            return {s: n for s, n in self._conn.execute(sql, (after_id,))}

    def ages(self, *, after_id: int = 0, since_ns: int | None = None) -> dict[str, AgeSummary]:
        """Per-stream frame age summary of results with id > ``after_id`` (received since)."""
        sql = "SELECT stream, age_ns FROM results WHERE id > ?"
        params: list[int] = [after_id]
        if since_ns is not None:
            sql += " AND received_ns >= ?"
            params.append(since_ns)
        with self._lock, self._errors("read"):
            rows = self._conn.execute(sql, params).fetchall()
        return summarize_ages(rows)

    def close(self) -> None:
        with self._lock:
            self._conn.close()

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


def _where(stream: str | None, after_id: int) -> tuple[str, list[Any]]:
    clauses: list[str] = ["id > ?"]
    params: list[Any] = [after_id]
    if stream not in (None, "", "*"):
        assert stream is not None
        prefix = stream[:-1] if stream.endswith("*") else stream
        if stream.endswith(("*", "/")):
            clauses.append("substr(stream, 1, ?) = ?")
            params += [len(prefix), prefix]
        else:
            clauses.append("stream = ?")
            params.append(stream)
    return " AND ".join(clauses), params


def record_from_row(row: tuple[Any, ...]) -> ResultRecord:
    """A record from a row of ``_COLUMNS`` (SQLite's and PostgreSQL's alike)."""
    try:
        result = json.loads(row[9])
    except ValueError:
        result = {"invalid_json": row[9]}
    return ResultRecord(
        id=row[0],
        received_ns=row[1],
        consumer=row[2],
        stream=row[3],
        session=row[4],
        seq=row[5],
        t_capture=row[6],
        t_start=row[7],
        duration_ns=row[8],
        result=result if isinstance(result, dict) else {"value": result},
    )


class FanOutStore(ResultStore):
    """Writes every batch to each store in turn; reads from the first."""

    def __init__(self, stores: Sequence[ResultStore]) -> None:
        if not stores:
            raise ValueError("FanOutStore needs at least one store")
        self.stores = tuple(stores)

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
