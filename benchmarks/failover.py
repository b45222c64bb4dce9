"""Failover in a broker set: ``kill -9`` of a broker to the first fresh frame of each moved stream.

``streams`` producer streams (:mod:`benchmarks.set_roles` ``set_load``: the producers' own
OwnerLink, pings and all) publish small frames at ``FPS`` to a loopback set of brokers; a
subscriber connected to every broker records every frame. Then, in turn for each of
``cycles`` brokers: ``kill -9`` it, wait until the survivors serve every stream, start it
again and wait until its streams are back. Per moved stream and kill:

- failover time: from the kill to the first frame received that was captured after the
  kill and is fresh (age <= one frame period + ``SLACK_MS``), on the subscriber's clock
  (same host, wall clock in ns);
- frames lost: the seq gap the subscriber saw across the move (the frames sent to the
  dead broker while the producer had not yet noticed).

What the brokers report (their live streams, ``--stale-after 1``) gives the observed
movement: which streams changed broker on the leave and on the return, against what
:func:`framebroker.placement.owner` predicts.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar

from benchmarks.loopback_set import LoopbackSet
from benchmarks.procs import Children
from framebroker import placement

FPS, SIZE = 15, 2_000
PERIOD_MS = 1000 / FPS
SLACK_MS = 100
T = TypeVar("T")


def _wait(probe: Callable[[], T | None], timeout: float, what: str) -> tuple[T, float]:
    """Poll ``probe`` until it returns something; (that, monotonic time it did)."""
    deadline = time.monotonic() + timeout
    while True:
        found = probe()
        if found is not None:
            return found, time.monotonic()
        if time.monotonic() > deadline:
            raise RuntimeError(f"failover: {what} not within {timeout:g}s")
        time.sleep(0.05)


def _predicted(bset: LoopbackSet, streams: list[str], hosts: list[str]) -> dict[str, str]:
    by_member = {bset.member(h): h for h in hosts}
    return {s: by_member[str(placement.owner(s, by_member))] for s in streams}


def _settled(
    bset: LoopbackSet, streams: list[str], want: dict[str, str]
) -> Callable[[], dict[str, str] | None]:
    """A probe: the placement the brokers report, once it is ``want``."""

    def probe() -> dict[str, str] | None:
        placed = bset.placed(streams)
        return placed if placed == want else None

    return probe


def measure(brokers: int, streams: int, cycles: int) -> dict[str, Any]:
    names = [f"site/cam{i:03d}" for i in range(streams)]
    kills: list[dict[str, Any]] = []
    with Children() as ch:
        bset = LoopbackSet(ch, brokers, "--stale-after", "1")
        bset.start_all()
        sub = ch.role("set_sub", connect=bset.endpoints("publish"), record=True)
        sub.ready()
        load = ch.role("set_load", ingest=bset.ingest, streams=names, fps=FPS, size=SIZE)
        load.ready(timeout=60)
        everyone = _predicted(bset, names, bset.hosts)
        _wait(_settled(bset, names, everyone), 20, "initial placement")
        busiest = sorted(bset.hosts, key=lambda h: -list(everyone.values()).count(h))
        for victim in busiest[:cycles]:
            kills.append(_cycle(bset, names, victim, everyone))
        sent = load.stop()
        got = sub.stop()
    if got is None or sent is None:
        raise RuntimeError("failover: a role reported nothing")
    for kill in kills:
        kill.update(_times(got["frames"], kill))
    return {"kills": kills, "moves": sent.get("moves"), "streams": streams, "brokers": brokers}


def _cycle(
    bset: LoopbackSet, names: list[str], victim: str, everyone: dict[str, str]
) -> dict[str, Any]:
    survivors = [h for h in bset.hosts if h != victim]
    moved = sorted(s for s in names if everyone[s] == victim)
    killed_ns = time.time_ns()
    bset.kill(victim)
    after, _ = _wait(_settled(bset, names, _predicted(bset, names, survivors)), 15, "failover")
    left = [s for s in names if after[s] != everyone[s]]
    time.sleep(1.0)
    bset.start(victim)
    restarted = time.monotonic()
    _, back_at = _wait(
        lambda: True if bset.live_streams(victim) >= set(moved) else None, 15, "return"
    )
    back, _ = _wait(_settled(bset, names, everyone), 15, "placement after the return")
    returned = [s for s in names if back[s] != after[s]]
    return {
        "victim": victim,
        "killed_ns": killed_ns,
        "moved": moved,
        "leave_moved": len(left) / len(names),
        "leave_only_victims": set(left) == set(moved),
        "join_moved": len(returned) / len(names),
        "join_only_to_victim": set(returned) == set(moved),
        "return_s": back_at - restarted,
    }


def _times(frames: dict[str, list[list[int]]], kill: dict[str, Any]) -> dict[str, Any]:
    """Failover time and frames lost, per moved stream, from the subscriber's record."""
    killed = kill["killed_ns"]
    failover_s: list[float] = []
    lost: list[int] = []
    for stream in kill["moved"]:
        record = frames.get(stream, [])
        before = [seq for _, captured, seq in record if captured <= killed]
        fresh = [
            (received, seq)
            for received, captured, seq in record
            if captured > killed and (received - captured) / 1e6 <= PERIOD_MS + SLACK_MS
        ]
        if not fresh:
            raise RuntimeError(f"failover: {stream} never got a fresh frame after the kill")
        failover_s.append((fresh[0][0] - killed) / 1e9)
        first_after = min(seq for _, captured, seq in record if captured > killed)
        if before:
            lost.append(first_after - max(before) - 1)
    return {"failover_s": failover_s, "lost": lost}
