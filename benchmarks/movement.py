"""How many streams move when a broker joins or leaves: the real placement code, many names.

For ``names`` stream names (``site{k}/cam{i}``, as sites name cameras) and sets of 1 to
``largest`` brokers (member ids ``10.0.0.k:5555``), every stream is ranked once over all
members with :func:`framebroker.placement.ranking`; its owner in a smaller set is the first
of its ranking in that set, which is what :func:`framebroker.placement.owner` returns (a
sample is checked against it). Then, for each set size N:

- join (N -> N+1): the fraction of streams whose owner changes, and whether every one of
  them moved *to the new broker*;
- leave (N -> N-1), averaged over which broker leaves: the fraction that moves, and whether
  every one of them was the leaving broker's.

Rendezvous hashing promises 1/(N+1) on a join and the leaving broker's share, 1/N on
average, on a leave, with nothing else moving.
"""

from __future__ import annotations

from typing import Any

from framebroker import placement


def members(count: int) -> list[str]:
    return [f"10.0.0.{k}:5555" for k in range(1, count + 1)]


def names(count: int) -> list[str]:
    return [f"site{i % 97}/cam{i}" for i in range(count)]


def _owners(rankings: list[list[str]], live: set[str]) -> list[str]:
    return [next(m for m in ranked if m in live) for ranked in rankings]


def measure(count: int, largest: int) -> list[dict[str, Any]]:
    """One row per set size N = 1 .. largest - 1 (join to N+1) and 2 .. largest (leave)."""
    everyone = members(largest)
    streams = names(count)
    rankings = [placement.ranking(s, everyone) for s in streams]
    for stream, ranked in list(zip(streams, rankings, strict=True))[:: max(1, count // 200)]:
        assert ranked[0] == placement.owner(stream, everyone)
    rows: list[dict[str, Any]] = []
    for n in range(1, largest + 1):
        live = set(everyone[:n])
        now = _owners(rankings, live)
        row: dict[str, Any] = {"brokers": n, "streams": count}
        if n < largest:
            newcomer = everyone[n]
            after = _owners(rankings, live | {newcomer})
            changed = [b != a for b, a in zip(now, after, strict=True)]
            row["join_moved"] = sum(changed) / count
            row["join_only_to_new"] = all(
                a == newcomer for a, c in zip(after, changed, strict=True) if c
            )
        if n > 1:
            fractions, only_leaver = [], True
            for leaver in sorted(live):
                after = _owners(rankings, live - {leaver})
                changed = [b != a for b, a in zip(now, after, strict=True)]
                fractions.append(sum(changed) / count)
                only_leaver &= all(b == leaver for b, c in zip(now, changed, strict=True) if c)
            row["leave_moved_mean"] = sum(fractions) / len(fractions)
            row["leave_moved_min"] = min(fractions)
            row["leave_moved_max"] = max(fractions)
            row["leave_only_leaver"] = only_leaver
        rows.append(row)
    return rows
