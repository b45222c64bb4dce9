"""What every result store is: the writer's interface, the readers' questions, the answers.

The stores (:mod:`.store` for SQLite and fan-out, :mod:`.postgres`, :mod:`.jsonl`) import
this module and :mod:`.sql`, never each other, except that :mod:`.store` picks SQLite or
PostgreSQL for ``--db`` (:func:`~.store.open_writer`, :func:`~.store.open_reader`).
"""

from __future__ import annotations

import statistics
from abc import ABC, abstractmethod
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from .record import ResultRecord


def is_server_db(db: str | Path) -> bool:
    """True when ``db`` names a PostgreSQL server (``postgresql://...``), not a file."""
    return str(db).startswith(("postgresql://", "postgres://"))


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

    # Whether the sink should write from a thread of its own, receiving meanwhile: worth it
    # when a commit waits on a server (a network round trip), not for an embedded file.
    background_writes: bool = False

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
