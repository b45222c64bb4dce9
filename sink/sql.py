"""The readers' SQL, written once for SQLite (``?``) and PostgreSQL (``%s``).

Both stores hold the same ``results`` table (their ``SCHEMA``), so each reader's question
is one statement that differs only in its placeholder. :class:`SQLReads` asks them; a
store provides ``placeholder`` and ``_read(sql, params)`` (its lock, its error wrapping).
Everything here is standard SQL both engines run alike (``substr``, ``coalesce``, an
aliased subquery).
"""

from __future__ import annotations

import json
from abc import ABC, abstractmethod
from typing import Any

from .base import AgeSummary, summarize_ages
from .record import ResultRecord

COLUMNS = "id, received_ns, consumer, stream, session, seq, t_capture, t_start, duration_ns, result"


def where(ph: str, stream: str | None, after_id: int) -> tuple[str, list[Any]]:
    """The WHERE clause for ``id > after_id`` and a stream pattern (see stream_matches)."""
    clauses: list[str] = [f"id > {ph}"]
    params: list[Any] = [after_id]
    if stream not in (None, "", "*"):
        assert stream is not None
        prefix = stream[:-1] if stream.endswith("*") else stream
        if stream.endswith(("*", "/")):
            clauses.append(f"substr(stream, 1, {ph}) = {ph}")
            params += [len(prefix), prefix]
        else:
            clauses.append(f"stream = {ph}")
            params.append(stream)
    return " AND ".join(clauses), params


def query(
    ph: str, stream: str | None, after_id: int, limit: int | None, newest: bool
) -> tuple[str, list[Any]]:
    """Rows of COLUMNS, oldest first; ``limit`` the oldest or (``newest``) the newest."""
    clause, params = where(ph, stream, after_id)
    sql = f"SELECT {COLUMNS} FROM results WHERE {clause}"
    if limit is None:
        return sql + " ORDER BY id", params
    order = "DESC" if newest else "ASC"
    return f"SELECT * FROM ({sql} ORDER BY id {order} LIMIT {ph}) AS r ORDER BY id", [
        *params,
        limit,
    ]


LAST_ID = "SELECT coalesce(max(id), 0) FROM results"


def counts(ph: str) -> str:
    return f"SELECT stream, count(*) FROM results WHERE id > {ph} GROUP BY stream ORDER BY stream"


def ages(ph: str, since: bool) -> str:
    sql = f"SELECT stream, age_ns FROM results WHERE id > {ph}"
    return sql + f" AND received_ns >= {ph}" if since else sql


def record_from_row(row: tuple[Any, ...] | Any) -> ResultRecord:
    """A record from a row of COLUMNS (SQLite's and PostgreSQL's alike)."""
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


class SQLReads(ABC):
    """The readers' questions (ResultReader) for a store whose rows are SQL's."""

    placeholder: str  # "?" (sqlite3) or "%s" (psycopg)

    @abstractmethod
    def _read(self, sql: str, params: list[Any]) -> list[Any]:
        """Every row of ``sql``; StoreError on failure."""

    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]:
        sql, params = query(self.placeholder, stream, after_id, limit, newest)
        return [record_from_row(row) for row in self._read(sql, params)]

    def last_id(self) -> int:
        """The highest row id so far (0 for an empty table)."""
        (row,) = self._read(LAST_ID, [])
        return int(row[0])

    def counts(self, *, after_id: int = 0) -> dict[str, int]:
        """Results per stream with id > ``after_id``."""
        return {s: int(n) for s, n in self._read(counts(self.placeholder), [after_id])}

    def ages(self, *, after_id: int = 0, since_ns: int | None = None) -> dict[str, AgeSummary]:
        """Per-stream frame age summary of results with id > ``after_id`` (received since)."""
        params = [after_id] if since_ns is None else [after_id, since_ns]
        return summarize_ages(self._read(ages(self.placeholder, since_ns is not None), params))
