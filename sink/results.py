"""Showing stored results: a table or JSON lines, once or following new rows."""

from __future__ import annotations

import shutil
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

from .base import ResultReader
from .record import ResultRecord, dumps

_MIN_RESULT_WIDTH = 20
_FOLLOW_BATCH = 1000


@dataclass(frozen=True)
class Table:
    """Fixed column widths, so rows printed later (``--follow``) line up with the header."""

    consumer: int = 10
    stream: int = 12
    result: int = 60

    @classmethod
    def fit(cls, records: Sequence[ResultRecord], width: int | None = None) -> Table:
        consumer = max([10, *(len(r.consumer) for r in records)])
        stream = max([12, *(len(r.stream) for r in records)])
        total = width or shutil.get_terminal_size((120, 24)).columns
        fixed = 12 + 2 + consumer + 2 + stream + 2 + 8 + 2 + 8 + 2 + 8 + 2
        return cls(consumer, stream, max(_MIN_RESULT_WIDTH, total - fixed - 1))

    def header(self) -> str:
        return (
            f"{'time':<12}  {'consumer':<{self.consumer}}  {'stream':<{self.stream}}  "
            f"{'seq':>8}  {'age ms':>8}  {'proc ms':>8}  result"
        )

    def row(self, r: ResultRecord) -> str:
        clock = time.strftime("%H:%M:%S", time.localtime(r.received_ns / 1e9))
        millis = r.received_ns // 1_000_000 % 1000
        return (
            f"{clock}.{millis:03d}  {r.consumer:<{self.consumer}}  {r.stream:<{self.stream}}  "
            f"{r.seq:>8}  {r.age_ns / 1e6:>8.1f}  {r.duration_ns / 1e6:>8.1f}  "
            f"{truncate(dumps(dict(r.result)), self.result)}"
        )


def truncate(text: str, width: int) -> str:
    return text if len(text) <= width else text[: max(0, width - 3)] + "..."


def as_json_line(record: ResultRecord) -> str:
    return dumps(record.to_map())


def show(
    store: ResultReader,
    write: Callable[[str], None],
    *,
    stream: str | None = None,
    limit: int | None = None,
    as_json: bool = False,
) -> tuple[int, Table | None]:
    """Print the newest ``limit`` results (all when None); return (last id, table used)."""
    records = store.query(stream=stream, limit=limit, newest=True)
    table = None if as_json else Table.fit(records)
    if table is not None:
        write(table.header())
    _write_rows(records, table, write)
    return (records[-1].id or 0) if records else 0, table


def follow(
    store: ResultReader,
    write: Callable[[str], None],
    *,
    after_id: int,
    table: Table | None,
    stream: str | None = None,
    interval: float = 0.5,
    should_stop: Callable[[], bool] = lambda: False,
) -> None:
    """Print rows added after ``after_id`` as they arrive, polling every ``interval`` s."""
    last = after_id
    while not should_stop():
        records = store.query(stream=stream, after_id=last, limit=_FOLLOW_BATCH)
        if records:
            _write_rows(records, table, write)
            last = records[-1].id or last
        if len(records) < _FOLLOW_BATCH:
            time.sleep(interval)


def _write_rows(
    records: Sequence[ResultRecord], table: Table | None, write: Callable[[str], None]
) -> None:
    lines = [table.row(r) if table else as_json_line(r) for r in records]
    if lines:
        write("\n".join(lines))
