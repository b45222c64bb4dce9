"""PostgreSQLStore: results in a server database, shared by several sinks and readers.

``--db postgresql://user@host/dbname`` (any libpq URL, ``postgres://`` too) selects it for
``framebroker sink``, ``results`` and ``view``. The table is SQLite's (``SCHEMA`` below
holds the same columns and the same unique key), so every reader asks the same questions
of either store.

Why it is shaped this way:

- Idempotent across sinks: ``INSERT ... ON CONFLICT DO NOTHING`` on the unique key
  (consumer, stream, session, seq). Two sinks given the same result (a consumer resent it
  after a sink died) store it once: the second insert waits for the first to commit, then
  does nothing.
- Batched: a batch is ONE statement, ``INSERT ... SELECT FROM unnest(arrays)``, run in
  autocommit mode: one round trip and one commit whatever its size (no BEGIN, no COMMIT);
  ``RETURNING`` names the rows that were new. The arrays travel as text literals the
  server parses (:func:`_array_literals`), not as lists psycopg adapts one element at a
  time in Python.
- Acknowledged after commit: ``add_many`` returns only once the transaction committed, and
  the sink acknowledges nothing before it returns. The sink calls it from a writer thread
  (``background_writes``, :mod:`.writer`), so it keeps receiving while a batch commits.
- Restartable: a failed statement drops the connection and raises StoreError; the sink
  keeps the batch and retries, and the next call connects again. A database restarted
  mid-run therefore loses nothing.

Row ids come from an identity column. With several sinks, ids are handed out before commit,
so a row may become visible after a row with a higher id: a reader following ``id >
last`` (``results --follow``, the viewer) can miss such a row; the rows themselves are all
there (``framebroker results`` without ``--follow`` shows them).
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from typing import Any

from framebroker.errors import StoreError

from .base import ResultStore, is_server_db
from .record import ResultRecord, dumps
from .sql import SQLReads

SCHEMA = """
CREATE TABLE IF NOT EXISTS results (
    id          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    received_ns BIGINT NOT NULL,
    consumer    TEXT   NOT NULL,
    stream      TEXT   NOT NULL,
    session     BIGINT NOT NULL,
    seq         BIGINT NOT NULL,
    t_capture   BIGINT NOT NULL,
    t_start     BIGINT NOT NULL,
    duration_ns BIGINT NOT NULL,
    age_ns      BIGINT NOT NULL,
    result      TEXT   NOT NULL,
    CONSTRAINT results_key UNIQUE (consumer, stream, session, seq)
);
CREATE INDEX IF NOT EXISTS results_stream ON results (stream, id);
"""
# Two sinks starting at once both run CREATE TABLE IF NOT EXISTS; PostgreSQL may then fail
# one of them on its catalog's unique index. A transaction-scoped advisory lock (any fixed
# number) makes them take turns.
_SCHEMA_LOCK = "SELECT pg_advisory_xact_lock(7401116)"
_INSERT = """
INSERT INTO results (received_ns, consumer, stream, session, seq, t_capture, t_start,
                     duration_ns, age_ns, result)
SELECT * FROM unnest(%s::bigint[], %s::text[], %s::text[], %s::bigint[], %s::bigint[],
                     %s::bigint[], %s::bigint[], %s::bigint[], %s::bigint[], %s::text[])
ON CONFLICT (consumer, stream, session, seq) DO NOTHING
RETURNING consumer, stream, session, seq
"""
_CONNECT_TIMEOUT_S = 5


def redact(url: str) -> str:
    """``url`` without its password, for logs and error messages."""
    scheme, sep, rest = url.partition("://")
    userinfo, at, host = rest.rpartition("@")
    if not at or ":" not in userinfo:
        return url
    return f"{scheme}{sep}{userinfo.split(':', 1)[0]}:***@{host}"


class PostgreSQLStore(SQLReads, ResultStore):
    """Results in a PostgreSQL table (see SCHEMA); one connection, reopened after a failure."""

    background_writes = True  # a commit is a round trip: the sink receives meanwhile
    placeholder = "%s"

    def __init__(self, url: str, *, create: bool = True, timeout: float = 5.0) -> None:
        if not is_server_db(url):
            raise StoreError(f"not a PostgreSQL URL: {redact(url)}")
        try:
            import psycopg
        except ImportError as exc:  # pragma: no cover - psycopg is a dependency
            raise StoreError(f"PostgreSQL needs the psycopg package: {exc}") from exc
        self._psycopg = psycopg
        self.url = url
        self.where = redact(url)
        self._create = create
        self._timeout = timeout
        self._lock = threading.Lock()
        self._conn: Any = None
        with self._lock, self._errors("open"):
            self._connection()

    @classmethod
    def open_existing(cls, url: str, *, timeout: float = 5.0) -> PostgreSQLStore:
        """The reader: StoreError when the database has no results table (yet)."""
        return cls(url, create=False, timeout=timeout)

    def _connection(self) -> Any:
        """The open connection, connecting (and creating or checking the table) if needed."""
        if self._conn is not None and not self._conn.closed:
            return self._conn
        conn = self._psycopg.connect(
            self.url,
            autocommit=True,
            connect_timeout=max(1, round(min(self._timeout, _CONNECT_TIMEOUT_S))),
            application_name="framebroker",
        )
        try:
            if self._create:
                with conn.transaction():
                    conn.execute(_SCHEMA_LOCK)
                    conn.execute(SCHEMA)
            elif (conn.execute("SELECT to_regclass('results')").fetchone() or [None])[0] is None:
                raise StoreError(f"{self.where} has no results table (start a sink on it first)")
        except BaseException:
            conn.close()
            raise
        self._conn = conn
        return conn

    def add_many(self, records: Sequence[ResultRecord]) -> list[ResultRecord]:
        """One INSERT of the whole batch, committed before returning; the new records."""
        if not records:
            return []
        columns = _array_literals(records)
        with self._lock, self._errors("write to"):
            # Autocommit: the statement is its own transaction, committed before the
            # server answers ReadyForQuery, which execute() waits for. No BEGIN and COMMIT
            # round trips around it.
            inserted = self._connection().execute(_INSERT, columns).fetchall()
        fresh = {tuple(row) for row in inserted}
        new: list[ResultRecord] = []
        for r in records:
            key = (r.consumer, r.stream, r.session, r.seq)
            if key in fresh:
                fresh.discard(key)  # the same result twice in one batch: the first is new
                new.append(r)
        return new

    def close(self) -> None:
        with self._lock:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        with self._lock, self._errors("read"):
            return list(self._connection().execute(sql, params).fetchall())

    @contextmanager
    def _errors(self, action: str) -> Iterator[None]:
        """psycopg errors -> StoreError; a broken connection is dropped, reopened next time."""
        try:
            yield
        except self._psycopg.Error as exc:
            if self._conn is not None and (self._conn.broken or self._conn.closed):
                self._conn.close()
                self._conn = None
            raise StoreError(f"cannot {action} results database {self.where}: {exc}") from exc


def _array_literals(records: Sequence[ResultRecord]) -> list[str]:
    """The batch as ten PostgreSQL array literals, one a column (``{1,2}``, ``{"a","b"}``).

    psycopg adapts a list element by element in Python (measured 18 us a result for this
    table); joining the literal with str methods costs about a third of that. The server
    parses them (``%s::bigint[]`` casts the text). Numbers are Python ints (from_message
    checked they fit in a bigint); texts are quoted with ``\\`` and ``"`` escaped.
    """
    return [
        _ints([r.received_ns for r in records]),
        _texts([r.consumer for r in records]),
        _texts([r.stream for r in records]),
        _ints([r.session for r in records]),
        _ints([r.seq for r in records]),
        _ints([r.t_capture for r in records]),
        _ints([r.t_start for r in records]),
        _ints([r.duration_ns for r in records]),
        _ints([r.t_start - r.t_capture for r in records]),
        _texts([dumps(r.result) for r in records]),
    ]


def _ints(values: list[int]) -> str:
    return "{" + ",".join(map(str, values)) + "}"


def _texts(values: list[str]) -> str:
    quoted = [v.replace("\\", "\\\\").replace('"', '\\"') for v in values]
    return '{"' + '","'.join(quoted) + '"}'
