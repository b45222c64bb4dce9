"""``framebroker streams`` over a broker set: who serves each stream, and the set's health.

Every broker of the set is asked at once (:func:`framebroker.control.request_all`). A
stream lives on its owner, but right after it moved the old broker may still list it
(going stale): the row shown is the broker that got its newest frame (live first, then
the smallest age), and the others are listed in ``brokers`` of the JSON output.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, TextIO

from framebroker.brokerset import member_id
from framebroker.control import Answer

from .tables import COLUMNS, format_table, stream_row

HEALTH_COLUMNS = ("BROKER", "STATE", "STREAMS", "ERROR")


def broker_name(endpoint: str) -> str:
    """``tcp://10.0.0.7:5558`` -> ``10.0.0.7``: a broker as users name it (its host)."""
    return member_id(endpoint).rsplit(":", 1)[0].strip("[]")


def merge_streams(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """One entry per stream, from the broker serving it, with ``broker`` (and ``brokers``:
    every broker that lists it)."""
    seen: dict[str, list[dict[str, Any]]] = {}
    for answer in answers:
        if answer.reply is None or not answer.reply.get("ok"):
            continue
        for entry in answer.reply.get("streams", []):
            row = {**entry, "broker": broker_name(answer.endpoint)}
            seen.setdefault(str(entry.get("stream", "?")), []).append(row)
    merged = []
    for name in sorted(seen):
        rows = sorted(seen[name], key=_serving_first)
        merged.append({**rows[0], "brokers": [r["broker"] for r in rows]})
    return merged


def _serving_first(row: Mapping[str, Any]) -> tuple[int, float]:
    return (0 if row.get("state") == "live" else 1, float(row.get("age_s", 0.0)))


def health(answers: Sequence[Answer]) -> list[dict[str, Any]]:
    """One entry per broker: up or down, how many streams it lists, why it is down."""
    out = []
    for answer in answers:
        reply = answer.reply or {}
        ok = answer.reply is not None and bool(reply.get("ok"))
        out.append(
            {
                "broker": broker_name(answer.endpoint),
                "up": ok,
                "streams": len(reply.get("streams", [])) if ok else 0,
                "error": None if ok else (answer.error or str(reply.get("error"))),
            }
        )
    return out


def print_set(answers: Sequence[Answer], out: TextIO) -> None:
    """The streams with the broker serving each, then the set's health."""
    streams = merge_streams(answers)
    if streams:
        rows = [(*stream_row(s), str(s["broker"])) for s in streams]
        print(format_table(rows, (*COLUMNS, "BROKER")), file=out)
    else:
        print("no streams (no producer has sent a frame yet)", file=out)
    brokers = health(answers)
    up = sum(1 for b in brokers if b["up"])
    print(f"\nbroker set: {up} of {len(brokers)} up", file=out)
    rows = [
        (b["broker"], "up" if b["up"] else "DOWN", str(b["streams"]), b["error"] or "")
        for b in brokers
    ]
    print(format_table(rows, HEALTH_COLUMNS), file=out)
