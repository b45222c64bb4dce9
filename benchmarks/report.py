"""What a scenario hands back: its table, its raw numbers, its targets, its plots."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from benchmarks.numbers import markdown, rnd, table


@dataclass(frozen=True)
class Options:
    """How big a run is: ``quick`` for CI (seconds), else the full run for the docs."""

    quick: bool
    out: Path

    def pick(self, quick: Any, full: Any) -> Any:
        return quick if self.quick else full


@dataclass(frozen=True)
class Target:
    """One target of the issue: ``measured`` (a ratio or a figure) against ``limit``."""

    name: str
    measured: float | None
    limit: float
    better: str  # "lower" or "higher"
    unit: str = "x"

    @property
    def met(self) -> bool | None:
        if self.measured is None or math.isnan(self.measured):
            return None
        if self.better == "lower":
            return self.measured <= self.limit
        return self.measured >= self.limit

    def to_map(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "measured": rnd(self.measured) if self.measured is not None else None,
            "limit": self.limit,
            "better": self.better,
            "unit": self.unit,
            "met": self.met,
        }


@dataclass
class Result:
    """A scenario's outcome."""

    name: str
    title: str
    columns: list[str]
    rows: list[list[Any]]
    data: dict[str, Any] = field(default_factory=dict)
    targets: list[Target] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    plots: list[str] = field(default_factory=list)  # file names in the output directory
    extra_tables: list[tuple[str, list[str], list[list[Any]]]] = field(default_factory=list)

    def text(self) -> str:
        parts = [f"== {self.title} ==", table(self.columns, self.rows)]
        for caption, columns, rows in self.extra_tables:
            parts += ["", caption, table(columns, rows)]
        parts += [f"* {note}" for note in self.notes]
        return "\n".join(parts)

    def markdown(self) -> str:
        parts = [markdown(self.columns, self.rows)]
        for caption, columns, rows in self.extra_tables:
            parts += ["", caption, "", markdown(columns, rows)]
        if self.notes:
            parts += [""] + [f"- {note}" for note in self.notes]
        return "\n".join(parts)

    def to_map(self) -> dict[str, Any]:
        return {
            "title": self.title,
            "columns": self.columns,
            "rows": [[_json(v) for v in row] for row in self.rows],
            "tables": [
                {"caption": c, "columns": cols, "rows": [[_json(v) for v in r] for r in rows]}
                for c, cols, rows in self.extra_tables
            ],
            "targets": [t.to_map() for t in self.targets],
            "notes": self.notes,
            "plots": self.plots,
            "data": self.data,
        }


def _json(value: Any) -> Any:
    return rnd(value, 4) if isinstance(value, float) else value
