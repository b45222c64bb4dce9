"""Scenario 2, broker throughput: msgs/s and GB/s through ours vs zmq.proxy vs direct.

One sender process sends one stream of frame messages as fast as its PUB takes them; one
subscriber process counts what arrives. The hop in between is the only thing that
changes (see :mod:`benchmarks.hops`), and the three run in alternating rounds so a busy
moment of the shared machine hits all of them; ratios are per round, then the median.
Over a measuring window (after a warm-up) we note messages delivered, messages offered by
the sender, and the middle process's CPU seconds (all threads, from /proc).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import hops
from benchmarks.numbers import median, ratio
from benchmarks.procs import Children, mark_all
from benchmarks.report import Options, Result, Target

RAW_1080P = 1920 * 1080 * 3
SIZES = {"10 kB": 10_000, "100 kB": 100_000, "raw 1080p": RAW_1080P}


def _hwm(size: int) -> int:
    """Sender queue: 1000 messages, but at most ~64 MB of them (raw 1080p: 10)."""
    return max(2, min(1000, (64 << 20) // size))


def measure(
    kind: str,
    size: int,
    transport: str,
    warmup: float,
    window: float,
) -> dict[str, Any]:
    """One run of one hop: delivered and offered rates, middle CPU per message."""
    with Children() as ch:
        hop = hops.setup(ch, kind, transport)
        subscriber = ch.role("sub", connect=[hop.subscribe_to])
        subscriber.ready()
        sender = ch.role("pub", size=size, hwm=_hwm(size), nice=19, **hop.sender)
        sender.ready()
        time.sleep(warmup)
        cpu0, t0 = hop.cpu_seconds(), time.monotonic()
        others0 = sender.cpu_seconds(), subscriber.cpu_seconds()
        mark_all(subscriber, sender)
        time.sleep(window)
        cpu1, t1 = hop.cpu_seconds(), time.monotonic()
        mark_all(subscriber, sender)
        others1 = sender.cpu_seconds(), subscriber.cpu_seconds()
        stats = hop.broker_stats()
        sent = sender.stop()
        got = subscriber.stop()
    if not sent or not got or len(sent["marks"]) < 2 or len(got["marks"]) < 2:
        raise RuntimeError(f"throughput run {kind}/{size} lost its marks: {sent} {got}")
    (ta, na, ba), (tb, nb, bb) = got["marks"][:2]
    (sa, sna, _), (sb, snb, _) = sent["marks"][:2]
    delivered = nb - na
    return {
        "msgs_s": delivered / (tb - ta),
        "gb_s": (bb - ba) / (tb - ta) / 1e9,
        "offered_msgs_s": (snb - sna) / (sb - sa),
        "cpu_s": cpu1 - cpu0,
        "cpu_share": (cpu1 - cpu0) / (t1 - t0),
        "cpu_us_per_msg": (cpu1 - cpu0) / delivered * 1e6 if delivered else None,
        "sender_cores": (others1[0] - others0[0]) / (t1 - t0),
        "subscriber_cores": (others1[1] - others0[1]) / (t1 - t0),
        "broker_frames_in": stats.get("frames_in") if stats else None,
    }


def run(opts: Options) -> Result:
    rounds = opts.pick(1, 5)
    warmup, window = opts.pick((0.3, 0.6), (0.7, 1.5))
    sizes = opts.pick({"10 kB": 10_000, "100 kB": 100_000}, SIZES)
    runs: dict[str, dict[str, list[dict[str, Any]]]] = {}
    for label, size in sizes.items():
        per = runs.setdefault(label, {kind: [] for kind in hops.MIDDLES})
        for r in range(rounds):
            for kind in hops.MIDDLES if r % 2 == 0 else reversed(hops.MIDDLES):
                per[kind].append(measure(kind, size, "tcp", warmup, window))
    return _result(runs, _same_host(opts, warmup, window), rounds, window)


def _same_host(opts: Options, warmup: float, window: float) -> dict[str, Any]:
    """tcp:// vs ipc:// through our broker and direct, 100 kB and raw 1080p."""
    out: dict[str, Any] = {}
    sizes = opts.pick({"100 kB": 100_000}, {"100 kB": 100_000, "raw 1080p": RAW_1080P})
    for label, size in sizes.items():
        for kind in ("direct", "ours"):
            reps: dict[str, list[dict[str, Any]]] = {"tcp": [], "ipc": []}
            for _ in range(opts.pick(1, 2)):
                for transport in reps:
                    reps[transport].append(measure(kind, size, transport, warmup, window))
            for transport, ms in reps.items():
                out[f"{label}/{kind}/{transport}"] = {
                    "msgs_s": median([m["msgs_s"] for m in ms]),
                    "gb_s": median([m["gb_s"] for m in ms]),
                    "runs": ms,
                }
    return out


def _pairs(a: list[dict[str, Any]], b: list[dict[str, Any]], key: str) -> list[float]:
    """Per-round ratios a/b of ``key``."""
    return [ratio(x[key] or 0.0, y[key] or 0.0) for x, y in zip(a, b, strict=True)]


def _result(
    runs: dict[str, dict[str, list[dict[str, Any]]]],
    same_host: dict[str, Any],
    rounds: int,
    window: float,
) -> Result:
    rows: list[list[Any]] = []
    targets: list[Target] = []
    summary: dict[str, Any] = {}
    for label, per in runs.items():
        vs_proxy = _pairs(per["ours"], per["proxy"], "msgs_s")
        vs_direct = _pairs(per["ours"], per["direct"], "msgs_s")
        cpu = _pairs(per["ours"], per["proxy"], "cpu_us_per_msg")
        med = {
            name: {
                k: median([m[k] for m in ms if m[k] is not None])
                for k in ("msgs_s", "gb_s", "offered_msgs_s", "cpu_us_per_msg", "cpu_share")
            }
            for name, ms in per.items()
        }
        summary[label] = {
            "median": med,
            "ratio_vs_proxy": median(vs_proxy),
            "ratio_vs_direct": median(vs_direct),
            "cpu_ratio_vs_proxy": median(cpu),
            "round_ratios_vs_proxy": vs_proxy,
            "round_ratios_vs_direct": vs_direct,
        }
        for name in per:
            m = med[name]
            middle = name != "direct"
            rows.append(
                [
                    label,
                    name,
                    m["msgs_s"],
                    m["gb_s"],
                    m["offered_msgs_s"],
                    m["cpu_us_per_msg"] if middle else None,
                    m["cpu_share"] if middle else None,
                    median(_pairs(per[name], per["proxy"], "msgs_s")) if middle else None,
                    median(_pairs(per[name], per["direct"], "msgs_s")) if middle else None,
                ]
            )
        if label in ("10 kB", "100 kB"):
            targets += [
                Target(
                    f"throughput {label}: ours / zmq.proxy msgs/s", median(vs_proxy), 1.0, "higher"
                ),
                Target(
                    f"broker CPU per message {label}: ours / zmq.proxy", median(cpu), 1.5, "lower"
                ),
            ]
        if label == "raw 1080p":
            targets.append(
                Target(
                    "throughput raw 1080p: ours / direct frames/s", median(vs_direct), 0.8, "higher"
                )
            )
    same_host_rows = []
    for key, m in same_host.items():
        label, kind, transport = key.split("/")
        tcp = same_host[f"{label}/{kind}/tcp"]
        same_host_rows.append(
            [label, kind, transport, m["msgs_s"], m["gb_s"], ratio(m["msgs_s"], tcp["msgs_s"])]
        )
    return Result(
        name="throughput",
        title="Broker throughput: one stream, the sender as fast as the path takes it",
        columns=[
            "size",
            "hop",
            "msgs/s",
            "GB/s",
            "offered msgs/s",
            "CPU us/msg",
            "CPU cores",
            "/ proxy",
            "/ direct",
        ],
        rows=rows,
        data={"runs": runs, "summary": summary, "same_host": same_host, "rounds": rounds},
        targets=targets,
        notes=[
            f"medians of {rounds} rounds of {window:g} s, hops in alternating order; ratios are "
            "medians of per-round ratios",
            "msgs/s: delivered to the subscriber; offered: taken by the sender's socket "
            "(XPUB_NODROP, nice 19: paced by the path, never starving the subscriber)",
            "CPU: the middle process (all threads) per delivered message; both queue up to "
            "1000 messages per subscriber (our --publish-hwm default, libzmq's default)",
        ],
        extra_tables=[
            (
                "Same host: tcp:// vs ipc:// (median msgs/s)",
                ["size", "hop", "transport", "msgs/s", "GB/s", "vs tcp"],
                same_host_rows,
            )
        ],
    )
