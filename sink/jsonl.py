"""The JSON Lines results store: one JSON object per line, appended, for other tools."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import IO, Any

from framebroker.errors import StoreError

from .base import ResultStore, stream_matches
from .record import ResultRecord, dumps


class JsonLinesStore(ResultStore):
    """Results appended to a text file, one JSON object per line (``ResultRecord.to_map``)."""

    def __init__(self, path: str | Path) -> None:
        self.path = str(path)
        self._lock = threading.Lock()
        try:
            self._file: IO[str] = open(self.path, "a", encoding="utf-8")  # noqa: SIM115
        except OSError as exc:
            raise StoreError(f"cannot open JSON Lines file {self.path}: {exc}") from exc

    def add_many(self, records: Sequence[ResultRecord]) -> Sequence[ResultRecord]:
        text = "".join(dumps(r.to_map()) + "\n" for r in records)
        with self._lock:
            try:
                self._file.write(text)
                self._file.flush()
            except (OSError, ValueError) as exc:
                raise StoreError(f"cannot write JSON Lines file {self.path}: {exc}") from exc
        return records

    def query(
        self,
        *,
        stream: str | None = None,
        after_id: int = 0,
        limit: int | None = None,
        newest: bool = False,
    ) -> list[ResultRecord]:
        """Read the file back; ids are line numbers (1-based)."""
        found: list[ResultRecord] = []
        with self._lock:
            self._file.flush()
        try:
            with open(self.path, encoding="utf-8") as f:
                for number, line in enumerate(f, start=1):
                    if number <= after_id or not line.strip():
                        continue
                    record = _record_from_map(json.loads(line), number)
                    if stream_matches(stream, record.stream):
                        found.append(record)
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise StoreError(f"cannot read JSON Lines file {self.path}: {exc}") from exc
        if limit is not None:
            found = found[-limit:] if newest else found[:limit]
        return found

    def close(self) -> None:
        with self._lock:
            self._file.close()


def _record_from_map(m: dict[str, Any], number: int) -> ResultRecord:
    return ResultRecord(
        id=number,
        received_ns=m["received_ns"],
        consumer=m["consumer"],
        stream=m["stream"],
        session=m["session"],
        seq=m["seq"],
        t_capture=m["t_capture"],
        t_start=m["t_start"],
        duration_ns=m["duration_ns"],
        result=m["result"],
    )
