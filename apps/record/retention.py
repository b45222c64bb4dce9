"""Retention: remove the oldest closed segments of a recording, by age and by total size.

Age is that of a segment's newest frame (the file's modification time: the last write);
size is the whole recording's, every stream together, open segments included. The
oldest segments go first, whatever their stream (ordered by the capture time their name
carries). A segment being written is never removed, so a recording can exceed its size
limit by the open segments.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from framebroker.segment import OPEN_SUFFIX, SEGMENT_SUFFIX, index_path, start_of

log = logging.getLogger("framebroker.record")


@dataclass(frozen=True)
class Retention:
    max_age: float | None = None  # seconds
    max_bytes: int | None = None

    @property
    def active(self) -> bool:
        return self.max_age is not None or self.max_bytes is not None


def _size(path: Path) -> int:
    try:
        size = path.stat().st_size
        index = index_path(path)
        return size + (index.stat().st_size if index.exists() else 0)
    except FileNotFoundError:
        return 0


def enforce(root: Path, policy: Retention, now: float | None = None) -> list[Path]:
    """Remove what ``policy`` no longer keeps under ``root``; the segments removed."""
    if not policy.active or not root.is_dir():
        return []
    now = time.time() if now is None else now
    closed = sorted(root.rglob("*" + SEGMENT_SUFFIX), key=start_of)
    total = sum(_size(p) for p in closed) + sum(_size(p) for p in root.rglob("*" + OPEN_SUFFIX))
    removed = []
    for segment in closed:
        too_old = policy.max_age is not None and now - _mtime(segment) > policy.max_age
        too_big = policy.max_bytes is not None and total > policy.max_bytes
        if not (too_old or too_big):
            if policy.max_age is None:
                break  # by size alone: the rest is newer and fits
            continue
        total -= _size(segment)
        index_path(segment).unlink(missing_ok=True)
        segment.unlink(missing_ok=True)
        removed.append(segment)
    if removed:
        log.info("retention removed %d segment(s), oldest %s", len(removed), removed[0])
    return removed


def _mtime(path: Path) -> float:
    try:
        return path.stat().st_mtime
    except FileNotFoundError:
        return time.time()
