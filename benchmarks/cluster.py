"""Scenario 7, cluster: a broker set of 1, 2 and 3 brokers; failover; streams moved.

- **Capacity.** The same site (``streams`` cameras x 15 fps x 50 kB, published through the
  producers' own OwnerLink: placement, pings to every broker) over a set of 1, 2 and 3
  ``framebroker broker`` processes on loopback (127.x.y.k, default ports), one subscriber
  connected to every broker. Per broker, over a window: messages/s (its own ``frames_in``
  counter) and CPU (all threads, from /proc), so CPU per message; idle CPU is measured
  before any client connects and subtracted for the marginal figure. All brokers share the
  machine's 2 cores with the load, so what is reported is each broker's cost; what N
  machines would give is projected from it (N x 10^6 / us per message, one core each),
  not measured.
- **Failover** (:mod:`benchmarks.failover`): ``kill -9`` of a broker to the first fresh
  frame of each of its streams, median and max over every moved stream of several kills.
- **Movement**: the fraction of streams moved when a broker joins or leaves, over the real
  placement code with many stream names (:mod:`benchmarks.movement`), and as observed in
  the failover run (what the brokers reported serving, before and after).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import failover, movement
from benchmarks.loopback_set import LoopbackSet
from benchmarks.numbers import median
from benchmarks.procs import Children, mark_all
from benchmarks.report import Options, Result, Target

FPS, SIZE = 15, 50_000
PER_LOADER = 100  # streams per load process


def capacity(brokers: int, streams: int, size: int, window: float, settle: float) -> dict[str, Any]:
    """One set size: per-broker messages/s and CPU over ``window``; the subscriber's counts."""
    names = [f"site/cam{i:03d}" for i in range(streams)]
    with Children() as ch:
        bset = LoopbackSet(ch, brokers)
        bset.start_all()
        idle = _idle(bset, 1.0)
        sub = ch.role("set_sub", connect=bset.endpoints("publish"))
        sub.ready()
        loaders = [
            ch.role(
                "set_load",
                name=f"load{i}",
                ingest=bset.ingest,
                streams=names[i : i + PER_LOADER],
                fps=FPS,
                size=size,
            )
            for i in range(0, streams, PER_LOADER)
        ]
        for loader in loaders:
            loader.ready(timeout=60)
        time.sleep(settle)  # placed, connected, subscribed, flowing
        cpu0, in0, t0 = bset.cpu_seconds(), _frames_in(bset), time.monotonic()
        mark_all(sub, *loaders)
        time.sleep(window)
        cpu1, in1, t1 = bset.cpu_seconds(), _frames_in(bset), time.monotonic()
        mark_all(sub, *loaders)
        sent = [loader.stop() for loader in loaders]
        time.sleep(0.5)  # what is on its way arrives
        got = sub.stop()
    if got is None or any(s is None for s in sent):
        raise RuntimeError("cluster: a role reported nothing")
    elapsed = t1 - t0
    per_broker = [_broker(cpu1[h] - cpu0[h], in1[h] - in0[h], idle[h], elapsed) for h in bset.hosts]
    return {
        "brokers": brokers,
        "streams": streams,
        "offered_msgs_s": sum(_rate(s["marks"]) for s in sent if s),
        "delivered_msgs_s": _rate(got["marks"]),
        "gaps_pct": 100 * got["gaps"] / max(1, got["received"] + got["gaps"]),
        "per_broker": per_broker,
    }


def _rate(marks: list[list[float]]) -> float:
    """Messages/s between a role's two marks, on its own clock (a busy child notes late)."""
    (t0, n0, _), (t1, n1, _) = marks[:2]
    return (n1 - n0) / (t1 - t0)


def _idle(bset: LoopbackSet, seconds: float) -> dict[str, float]:
    """Each broker's CPU rate (cores) with no client at all."""
    time.sleep(0.3)
    cpu0, t0 = bset.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    cpu1, elapsed = bset.cpu_seconds(), time.monotonic() - t0
    return {h: (cpu1[h] - cpu0[h]) / elapsed for h in cpu0}


def _frames_in(bset: LoopbackSet) -> dict[str, int]:
    counts = {}
    for host in bset.hosts:
        stats = bset.request(host, "stats")
        if stats is None:
            raise RuntimeError(f"cluster: broker {host} did not answer stats")
        counts[host] = int(stats["frames_in"])
    return counts


def _broker(cpu: float, msgs: int, idle: float, elapsed: float) -> dict[str, float]:
    return {
        "msgs_s": msgs / elapsed,
        "cores": cpu / elapsed,
        "us_per_msg": cpu / msgs * 1e6 if msgs else float("nan"),
        "marginal_us_per_msg": max(0.0, cpu - idle * elapsed) / msgs * 1e6
        if msgs
        else float("nan"),
    }


def _mean(values: list[float]) -> float:
    return sum(values) / len(values) if values else float("nan")


def _capacity_row(m: dict[str, Any]) -> list[Any]:
    brokers = m["per_broker"]
    us = _mean([b["us_per_msg"] for b in brokers])
    return [
        m["brokers"],
        m["offered_msgs_s"],
        m["delivered_msgs_s"],
        m["gaps_pct"],
        _mean([b["msgs_s"] for b in brokers]),
        max(b["msgs_s"] for b in brokers),
        _mean([b["cores"] for b in brokers]),
        us,
        _mean([b["marginal_us_per_msg"] for b in brokers]),
        sum(b["cores"] for b in brokers),
        m["brokers"] * 1e6 / us,
    ]


def run(opts: Options) -> Result:
    steps, streams, size = opts.pick(((1, 2), 20, 10_000), ((1, 2, 3), 200, SIZE))
    window, settle = opts.pick((1.0, 1.0), (5.0, 2.5))
    set_size, fo_streams, cycles = opts.pick((2, 8, 1), (3, 60, 3))
    names, largest = opts.pick((2_000, 4), (100_000, 8))
    runs = [capacity(n, streams, size, window, settle) for n in steps]
    fo = failover.measure(set_size, fo_streams, cycles)
    moves = movement.measure(names, largest)
    return _result(runs, fo, moves, size, opts)


def _failover_rows(fo: dict[str, Any]) -> list[list[Any]]:
    rows = []
    for k in fo["kills"]:
        rows.append(
            [
                k["victim"],
                len(k["moved"]),
                100 * k["leave_moved"],
                "yes" if k["leave_only_victims"] else "NO",
                median(k["failover_s"]),
                max(k["failover_s"]),
                median(k["lost"]) if k["lost"] else float("nan"),
                100 * k["join_moved"],
                "yes" if k["join_only_to_victim"] else "NO",
                k["return_s"],
            ]
        )
    return rows


def _movement_rows(moves: list[dict[str, Any]]) -> list[list[Any]]:
    rows = []
    for m in moves:
        n = m["brokers"]
        join = m.get("join_moved")
        leave = m.get("leave_moved_mean")
        rows.append(
            [
                n,
                None if join is None else 100 * join,
                None if join is None else 100 / (n + 1),
                None if leave is None else 100 * leave,
                None
                if leave is None
                else f"{100 * m['leave_moved_min']:.1f}-{100 * m['leave_moved_max']:.1f}",
                None if leave is None else 100 / n,
                "yes"
                if m.get("join_only_to_new", True) and m.get("leave_only_leaver", True)
                else "NO",
            ]
        )
    return rows


def _targets(fo: dict[str, Any], moves: list[dict[str, Any]]) -> list[Target]:
    times = [t for k in fo["kills"] for t in k["failover_s"]]
    join_excess = max(m["join_moved"] * (m["brokers"] + 1) for m in moves if "join_moved" in m)
    strays = sum(
        (not k["leave_only_victims"]) + (not k["join_only_to_victim"]) for k in fo["kills"]
    )
    strays += sum(
        (not m.get("join_only_to_new", True)) + (not m.get("leave_only_leaver", True))
        for m in moves
    )
    return [
        Target(
            f"failover: kill -9 to the first fresh frame of each moved stream, max over "
            f"{len(times)} (s)",
            max(times),
            3.0,
            "lower",
            unit="s",
        ),
        Target(
            "streams moved on a join / the ideal 1/(N+1), worst N",
            join_excess,
            1.1,
            "lower",
        ),
        Target(
            "moves of streams that were not the joining or leaving broker's "
            "(placement code and the run)",
            float(strays),
            0,
            "lower",
            unit="",
        ),
    ]


def _result(
    runs: list[dict[str, Any]],
    fo: dict[str, Any],
    moves: list[dict[str, Any]],
    size: int,
    opts: Options,
) -> Result:
    times = [t for k in fo["kills"] for t in k["failover_s"]]
    streams = runs[0]["streams"]
    return Result(
        name="cluster",
        title=f"Cluster: {streams} streams x {FPS} fps x {size // 1000} kB over a set of "
        f"{', '.join(str(r['brokers']) for r in runs)} brokers on loopback; failover; movement",
        columns=[
            "brokers",
            "offered/s",
            "delivered/s",
            "gaps %",
            "msgs/s per broker",
            "busiest broker msgs/s",
            "cores per broker",
            "us/msg per broker",
            "marginal us/msg",
            "all brokers' cores",
            "N machines: N x 1e6/us (projection)",
        ],
        rows=[_capacity_row(r) for r in runs],
        extra_tables=[
            (
                f"Failover: {fo['brokers']} brokers, {fo['streams']} streams x {failover.FPS} "
                f"fps; kill -9 of one broker at a time, then its return. Over all "
                f"{len(times)} moved streams: median {median(times):.2f} s, max "
                f"{max(times):.2f} s.",
                [
                    "killed broker",
                    "its streams",
                    "moved on leave %",
                    "only its streams",
                    "failover median s",
                    "failover max s",
                    "frames lost (median)",
                    "moved on return %",
                    "only back to it",
                    "return s",
                ],
                _failover_rows(fo),
            ),
            (
                f"Movement over the placement code: {moves[0]['streams']:,} stream names, "
                "sets of N brokers; leave: averaged over which broker leaves (min-max).",
                [
                    "N",
                    "join N->N+1 moved %",
                    "ideal 1/(N+1) %",
                    "leave N->N-1 moved %",
                    "leave min-max %",
                    "ideal 1/N %",
                    "only the joiner's / leaver's",
                ],
                _movement_rows(moves),
            ),
        ],
        data={"capacity": runs, "failover": fo, "movement": moves},
        targets=_targets(fo, moves),
        notes=[
            "capacity: every broker is `framebroker broker` on its own 127.x.y.k with the "
            "default ports; producers place their streams by rendezvous hashing and ping "
            "every broker of the set twice a second (a set of one: no pings, as before sets)",
            "msgs/s per broker: its frames_in counter over the window; cores: its CPU, all "
            "threads; us/msg = CPU / messages; marginal: minus its idle CPU before any client",
            "all brokers share this machine's 2 cores with the load and the subscriber: the "
            "last column is a linear projection (one core per broker, on N machines) from the "
            "measured cost per message, not a measurement",
            "failover: from kill -9 to the first frame captured after the kill and at most "
            f"{failover.PERIOD_MS:.0f} + {failover.SLACK_MS} ms old at the subscriber (one SUB "
            "connected to every broker); return s: from the restarted broker's first ping "
            "answer until it serves all of its streams again",
        ],
    )
