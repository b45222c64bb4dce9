"""Scenario 3, latency: sender's send -> subscriber's receive, idle and under load.

A probe sender stamps each message (CLOCK_MONOTONIC, shared by every process on a host)
just before ``send``; the subscriber notes the time right after ``recv``. Probes go at a
steady rate, one at a time, so nothing queues behind them but the load. "Under load"
adds 100 streams x 15 fps x 100 kB (one CONFLATE PUB per stream, like producers) through
the same hop to a subscriber of everything; the probe subscriber takes the probe stream
only. With ``direct`` the load goes straight to its own subscriber: the machine carries
the same traffic, there is just no hop for the probes to share.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import hops
from benchmarks.numbers import percentile, ratio
from benchmarks.procs import Children, mark_all
from benchmarks.report import Options, Result, Target
from benchmarks.throughput import RAW_1080P

LOAD_STREAMS, LOAD_FPS, LOAD_SIZE = 100, 15, 100_000
HOPS = (("direct", "tcp"), ("proxy", "tcp"), ("ours", "tcp"), ("direct", "ipc"), ("ours", "ipc"))


def measure(
    kind: str, transport: str, size: int, rate: float, count: int, load: bool
) -> dict[str, Any]:
    with Children() as ch:
        hop = hops.setup(ch, kind, transport)
        receiver = ch.role(
            "probe_sub", connect=[hop.subscribe_to], stream="probe", size=size, count=count
        )
        receiver.ready()
        load_info = _start_load(ch, hop) if load else None
        probe = ch.role(
            "probe", stream="probe", size=size, rate=rate, count=count, settle=1.0, **hop.sender
        )
        probe.ready()
        probe.result(timeout=count / rate + 30)
        time.sleep(0.3)  # the last probes land
        got = receiver.stop() or {}
        load_rate = _stop_load(load_info) if load_info else None
    lat_us = [v / 1000 for v in got.get("latency_ns", [])]
    return {
        "n": len(lat_us),
        "lost": count - len(lat_us),
        "p50_us": percentile(lat_us, 50),
        "p90_us": percentile(lat_us, 90),
        "p99_us": percentile(lat_us, 99),
        "max_us": max(lat_us) if lat_us else None,
        "load_delivered_msgs_s": load_rate,
        "latency_us": lat_us,
    }


def _start_load(ch: Children, hop: hops.Hop) -> tuple[Any, Any, float]:
    if hop.kind == "direct":
        endpoint = ch.endpoint(hop.transport)
        sink = ch.role("sub", name="load-sink", bind=[endpoint])
        targets = [endpoint]
    else:
        sink = ch.role("sub", name="load-sink", connect=[hop.subscribe_to])
        targets = hop.sender["connect"]
    sink.ready()
    streams = [f"load/{i}" for i in range(LOAD_STREAMS)]
    loader = ch.role("load", connect=targets, streams=streams, fps=LOAD_FPS, size=LOAD_SIZE)
    loader.ready()
    time.sleep(1.0)  # the load is flowing before the first probe
    mark_all(sink)
    return loader, sink, time.monotonic()


def _stop_load(info: tuple[Any, Any, float]) -> float | None:
    loader, sink, _ = info
    mark_all(sink)
    loader.stop()
    got = sink.stop()
    if not got or len(got["marks"]) < 2:
        return None
    (ta, na, _), (tb, nb, _) = got["marks"][:2]
    return (nb - na) / (tb - ta)


def run(opts: Options) -> Result:
    sizes = opts.pick(
        {"100 kB": (100_000, 100.0, 50)},
        {"100 kB": (100_000, 100.0, 300), "raw 1080p": (RAW_1080P, 25.0, 100)},
    )
    loads = opts.pick((False,), (False, True))
    runs: dict[str, dict[str, Any]] = {}
    flip = False
    for label, (size, rate, count) in sizes.items():
        for load in loads:
            order = tuple(reversed(HOPS)) if flip else HOPS
            flip = not flip
            for kind, transport in order:
                key = f"{label}/{'load' if load else 'idle'}/{kind}/{transport}"
                runs[key] = measure(kind, transport, size, rate, count, load)
    return _result(runs, opts)


def _result(runs: dict[str, dict[str, Any]], opts: Options) -> Result:
    rows: list[list[Any]] = []
    targets: list[Target] = []
    groups = sorted(
        {k.rsplit("/", 2)[0] for k in runs}, key=lambda g: list(runs).index(f"{g}/direct/tcp")
    )
    for group in groups:
        direct = runs[f"{group}/direct/tcp"]
        for kind, transport in HOPS:
            m = runs.get(f"{group}/{kind}/{transport}")
            if m is None:
                continue
            base = runs.get(f"{group}/direct/{transport}", direct)
            rows.append(
                [
                    group.replace("/", ", "),
                    f"{kind} {transport}",
                    m["p50_us"] / 1000,
                    m["p90_us"] / 1000,
                    m["p99_us"] / 1000,
                    (m["max_us"] or 0) / 1000,
                    m["lost"],
                    ratio(m["p50_us"], base["p50_us"]) if kind != "direct" else None,
                    ratio(m["p99_us"], base["p99_us"]) if kind != "direct" else None,
                    ratio(m["p50_us"], direct["p50_us"]) if transport == "ipc" else None,
                ]
            )
        ours = runs[f"{group}/ours/tcp"]
        name = group.replace("/", ", ")
        targets.append(
            Target(
                f"latency p50 {name}: ours / direct",
                ratio(ours["p50_us"], direct["p50_us"]),
                1.3,
                "lower",
            )
        )
        targets.append(
            Target(
                f"latency p99 {name}: ours / direct",
                ratio(ours["p99_us"], direct["p99_us"]),
                2.0,
                "lower",
            )
        )
    data = {k: {n: v for n, v in m.items() if n != "latency_us"} for k, m in runs.items()}
    samples = {k: m["latency_us"] for k, m in runs.items()}
    plots = _plot(samples, opts)
    return Result(
        name="latency",
        title="Latency, sender send -> subscriber receive (ms)",
        columns=[
            "case",
            "hop",
            "p50",
            "p90",
            "p99",
            "max",
            "lost",
            "p50 / direct",
            "p99 / direct",
            "p50 / direct tcp",
        ],
        rows=rows,
        data={"runs": data},
        targets=targets,
        notes=[
            "ratios compare with direct PUB->SUB over the same transport; the last column "
            "compares an ipc:// hop with a direct tcp:// link (same-host fast path)",
            f"load: {LOAD_STREAMS} streams x {LOAD_FPS} fps x {LOAD_SIZE // 1000} kB through "
            "the same hop, to a subscriber of everything",
        ],
        plots=plots,
    )


def _plot(samples: dict[str, list[float]], opts: Options) -> list[str]:
    from benchmarks import plots

    return plots.latency_cdf(samples, opts.out)
