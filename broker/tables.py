"""Plain-text tables for ``framebroker streams``: streams, work groups, broker totals."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

COLUMNS = ("STREAM", "STATE", "SIZE", "ENCODING", "FPS", "FRAMES", "MB", "AGE")
_RIGHT = {"FPS", "FRAMES", "MB", "AGE", "CREDIT", "IN FLIGHT", "SENT", "SEEN"}


def stream_row(s: Mapping[str, Any]) -> tuple[str, ...]:
    shape = s.get("shape") or []
    size = f"{shape[1]}x{shape[0]}" if len(shape) >= 2 else "?"
    return (
        str(s.get("stream", "?")),
        str(s.get("state", "?")),
        size,
        f"{s.get('encoding', '?')}/{s.get('pixfmt', '?')}",
        f"{float(s.get('fps', 0.0)):.1f}",
        str(s.get("frames", 0)),
        f"{int(s.get('bytes', 0)) / 1e6:.1f}",
        format_age(float(s.get("age_s", 0.0))),
    )


def format_age(seconds: float) -> str:
    if seconds < 60:
        return f"{seconds:.1f}s"
    if seconds < 3600:
        return f"{int(seconds // 60)}m{int(seconds % 60):02d}s"
    return f"{int(seconds // 3600)}h{int(seconds % 3600 // 60):02d}m"


def format_table(rows: Sequence[Sequence[str]], columns: Sequence[str] = COLUMNS) -> str:
    widths = [max(len(c), *(len(r[i]) for r in rows)) for i, c in enumerate(columns)]
    lines = []
    for row in (columns, *rows):
        cells = [
            cell.rjust(w) if col in _RIGHT else cell.ljust(w)
            for cell, w, col in zip(row, widths, columns, strict=True)
        ]
        lines.append("  ".join(cells).rstrip())
    return "\n".join(lines)


def print_streams(streams: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    if not streams:
        print("no streams (no producer has sent a frame yet)", file=out)
        return
    print(format_table([stream_row(s) for s in streams]), file=out)


GROUP_COLUMNS = ("GROUP", "WORKER", "CREDIT", "IN FLIGHT", "SENT", "SEEN")


def print_groups(groups: Sequence[Mapping[str, Any]], out: TextIO) -> None:
    """One line per worker, then each group's totals (frames handed out, skipped)."""
    print("\nwork groups", file=out)
    if not groups:
        print("  none (no worker has joined a group)", file=out)
        return
    rows = [
        (
            str(g.get("group", "?")),
            str(w.get("name", "?")),
            str(w.get("credit", 0)),
            str(w.get("in_flight", 0)),
            str(w.get("sent", 0)),
            format_age(float(w.get("age_s", 0.0))) + " ago",
        )
        for g in groups
        for w in g.get("workers", [])
    ]
    print(format_table(rows, GROUP_COLUMNS), file=out)
    for g in groups:
        print(
            f"  {g.get('group')}: {g.get('dispatched', 0)} frames handed out, "
            f"{g.get('skipped', 0)} skipped (a newer frame came first), "
            f"{g.get('waiting', 0)} streams waiting for a worker",
            file=out,
        )


_STATS_ORDER = (
    "uptime_s",
    "frames_in",
    "bytes_in",
    "frames_out",
    "cache_sends",
    "subscriptions",
    "streams_live",
    "streams_stale",
    "malformed",
    "disconnects",
    "control_requests",
)


def print_stats(stats: Mapping[str, Any], out: TextIO) -> None:
    print("\nbroker totals", file=out)
    skip = {"v", "ok"}
    keys = [k for k in _STATS_ORDER if k in stats]
    keys += sorted(k for k in stats if k not in keys and k not in skip)
    width = max(map(len, keys), default=0)
    for key in keys:
        value = stats[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        print(f"  {key.ljust(width)}  {value}", file=out)
