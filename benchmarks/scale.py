"""Scenario 4, scale: streams 1 -> 500 and subscribers 1 -> 16 through one broker.

Every stream is its own CONFLATE PUB socket (as producers are), 15 fps, 50 kB frames, sent
by load processes of up to 125 streams each. Subscribers take every stream and count seq
gaps. For each step, ours and zmq.proxy run back to back. The broker's CPU is measured over
the window and, separately, while idle before the load starts; "marginal" CPU per
message subtracts the idle rate (poll timeouts, heartbeats, housekeeping), which
otherwise dominates at 15 messages a second.
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import hops
from benchmarks.numbers import ratio
from benchmarks.procs import Children, mark_all
from benchmarks.report import Options, Result, Target

FPS, SIZE = 15, 50_000
PER_LOADER = 125
KINDS = ("ours", "proxy")


def measure(
    kind: str, streams: int, subscribers: int, window: float, settle: float = 2.0
) -> dict[str, Any]:
    """One step: rates and CPU over ``window``; losses over the whole run (exact counts)."""
    with Children() as ch:
        hop = hops.setup(ch, kind, "tcp")
        idle = _idle_cpu(hop, min(1.0, window))
        subs = ch.role("scale_sub", connect=hop.subscribe_to, subscribers=subscribers)
        subs.ready()
        names = [f"scale/s{i:03d}" for i in range(streams)]
        loaders = [
            ch.role(
                "load",
                name=f"load{i}",
                connect=hop.sender["connect"],
                streams=names[i : i + PER_LOADER],
                fps=FPS,
                size=SIZE,
            )
            for i in range(0, streams, PER_LOADER)
        ]
        for loader in loaders:
            loader.ready()
        time.sleep(settle)  # connected, subscribed, flowing
        cpu0, t0 = hop.cpu_seconds(), time.monotonic()
        mark_all(subs, *loaders)
        time.sleep(window)
        cpu1, t1 = hop.cpu_seconds(), time.monotonic()
        mark_all(subs, *loaders)
        sent = [loader.stop() for loader in loaders]
        time.sleep(0.5)  # what is on its way arrives
        stats = hop.broker_stats()
        got = subs.stop()
    return _figures(sent, got, stats, cpu1 - cpu0, t1 - t0, idle, subscribers)


def _idle_cpu(hop: hops.Hop, seconds: float) -> float:
    """The hop's CPU rate (cores) with nothing flowing."""
    time.sleep(0.3)
    cpu0, t0 = hop.cpu_seconds(), time.monotonic()
    time.sleep(seconds)
    return (hop.cpu_seconds() - cpu0) / (time.monotonic() - t0)


def _delta(marks: list[list[float]], index: int) -> float:
    return marks[1][index] - marks[0][index]


def _figures(
    sent: list[dict[str, Any] | None],
    got: dict[str, Any] | None,
    stats: dict[str, Any] | None,
    cpu: float,
    elapsed: float,
    idle: float,
    subscribers: int,
) -> dict[str, Any]:
    if got is None or len(got["marks"]) < 2 or any(s is None or len(s["marks"]) < 2 for s in sent):
        raise RuntimeError("scale run lost its marks")
    offered = sum(_delta(s["marks"], 1) for s in sent if s)
    received = _delta(got["marks"], 1)
    marginal = max(0.0, cpu - idle * elapsed)
    # Whole-run totals, taken after the load stopped and drained: exact, no window skew.
    sent_total = sum(s["sent"] for s in sent if s)
    frames_in = stats["frames_in"] if stats else None
    delivered_total, gaps_total = got["received"], got["gaps"]
    return {
        "offered_msgs_s": offered / elapsed,
        "delivered_msgs_s": received / elapsed,
        "cpu_cores": cpu / elapsed,
        "idle_cores": idle,
        "cpu_us_per_frame": cpu / offered * 1e6 if offered else None,
        "marginal_us_per_frame": marginal / offered * 1e6 if offered else None,
        "marginal_us_per_delivery": marginal / received * 1e6 if received else None,
        "sent_total": sent_total,
        "broker_frames_in": frames_in,
        "delivered_total": delivered_total,
        "gaps": gaps_total,
        "loss": gaps_total / (delivered_total + gaps_total) if delivered_total else None,
        "broker_loss": (1 - delivered_total / subscribers / frames_in if frames_in else None),
    }


def run(opts: Options) -> Result:
    window, settle = opts.pick((1.0, 1.0), (4.0, 2.0))
    stream_steps = opts.pick([10], [1, 10, 100, 250, 500])
    sub_streams = opts.pick(10, 20)
    sub_steps = opts.pick([2], [1, 2, 4, 8, 16])
    by_streams: dict[int, dict[str, dict[str, Any]]] = {}
    by_subs: dict[int, dict[str, dict[str, Any]]] = {}
    for i, n in enumerate(stream_steps):
        kinds = KINDS if i % 2 == 0 else tuple(reversed(KINDS))
        by_streams[n] = {k: measure(k, n, 1, window, settle) for k in kinds}
    for i, n in enumerate(sub_steps):
        kinds = KINDS if i % 2 == 0 else tuple(reversed(KINDS))
        by_subs[n] = {k: measure(k, sub_streams, n, window, settle) for k in kinds}
    return _result(by_streams, by_subs, sub_streams, window, opts)


def _row(label: str, ours: dict[str, Any], proxy: dict[str, Any]) -> list[Any]:
    return [
        label,
        ours["offered_msgs_s"],
        ours["delivered_msgs_s"],
        ours["cpu_cores"],
        ours["marginal_us_per_frame"],
        ours["marginal_us_per_delivery"],
        proxy["marginal_us_per_delivery"],
        ratio(ours["marginal_us_per_delivery"] or 0, proxy["marginal_us_per_delivery"] or 0),
        _pct(ours["loss"]),
        _pct(ours["broker_loss"]),
        _pct(proxy["loss"]),
    ]


def _pct(value: float | None) -> float | None:
    return None if value is None else 100.0 * value


def _spread(values: list[float]) -> float:
    values = [v for v in values if v]
    return max(values) / min(values) if values else float("nan")


def _result(
    by_streams: dict[int, dict[str, dict[str, Any]]],
    by_subs: dict[int, dict[str, dict[str, Any]]],
    sub_streams: int,
    window: float,
    opts: Options,
) -> Result:
    rows = [_row(f"{n} streams, 1 sub", m["ours"], m["proxy"]) for n, m in by_streams.items()]
    rows += [
        _row(f"{sub_streams} streams, {n} subs", m["ours"], m["proxy"]) for n, m in by_subs.items()
    ]
    stream_cpu = [m["ours"]["marginal_us_per_frame"] for m in by_streams.values()]
    sub_cpu = [m["ours"]["marginal_us_per_delivery"] for m in by_subs.values()]
    biggest = by_streams[max(by_streams)]["ours"]
    targets = [
        Target(
            f"{max(by_streams)} streams x {FPS} fps x {SIZE // 1000} kB: frames lost in the "
            "broker (%, beyond producer-side conflation)",
            _pct(max(0.0, biggest["broker_loss"] or 0.0)),
            0.5,
            "lower",
            unit="%",
        ),
        Target(
            "broker CPU per frame flat over the stream steps: max / min",
            _spread(stream_cpu),
            1.2,
            "lower",
        ),
        Target(
            "broker CPU per delivered message flat over 1..16 subscribers: max / min",
            _spread(sub_cpu),
            1.2,
            "lower",
        ),
        Target(
            f"broker CPU per frame does not grow: {max(by_streams)} / {min(by_streams)} streams",
            ratio(stream_cpu[-1] or 0, stream_cpu[0] or 0),
            1.2,
            "lower",
        ),
        Target(
            f"broker CPU per delivered message does not grow: {max(by_subs)} / "
            f"{min(by_subs)} subscribers",
            ratio(sub_cpu[-1] or 0, sub_cpu[0] or 0),
            1.2,
            "lower",
        ),
    ]
    from benchmarks import plots

    return Result(
        name="scale",
        title=f"Scale: {FPS} fps x {SIZE // 1000} kB streams, one broker",
        columns=[
            "case",
            "offered/s",
            "delivered/s",
            "broker cores",
            "us/frame",
            "us/delivery",
            "proxy us/delivery",
            "ours/proxy",
            "gaps %",
            "broker loss %",
            "proxy gaps %",
        ],
        rows=rows,
        data={"by_streams": by_streams, "by_subscribers": by_subs, "window_s": window},
        targets=targets,
        notes=[
            "us/frame and us/delivery: broker CPU (all threads) minus its idle rate, per frame "
            "received and per message delivered to a subscriber",
            "gaps: frames missing between two frames a subscriber received (any cause: "
            "conflation in a producer's CONFLATE socket, by design, or a drop on the way); "
            "broker loss: frames the broker received but did not deliver (exact totals "
            "after the load stopped and drained)",
        ],
        plots=plots.scale(by_streams, by_subs, opts.out),
    )
