"""Scenario 1, freshness: how old is the frame a slow consumer starts on?

Producers at 30 fps (the test pattern, 320x240 JPEG q80), a consumer spending 100 ms per
frame, for ``duration`` seconds after every stream delivered its first result. Age =
processing start - capture time (the consumer's clock, the producer's capture stamp; one
host, one clock).

- ours: ``framebroker broker`` and one ``framebroker produce test:320x240@30`` per
  stream, exactly as users run them; the consumer is our :class:`consumers.Consumer`.
- imagezmq: one ``ImageSender(REQ_REP=False)`` per stream (it binds a PUB), one
  ``ImageHub`` connected to all of them, ``send_jpg``/``recv_jpg`` as its docs use them;
  the hub handles messages in the order they arrive.
"""

from __future__ import annotations

from typing import Any

from benchmarks import hops
from benchmarks.numbers import median, percentile
from benchmarks.procs import Children
from benchmarks.report import Options, Result, Target

FPS = 30
PERIOD_MS = 1000 / FPS
WIDTH, HEIGHT, QUALITY = 320, 240, 80
SLACK_MS = 10  # the target: p99 <= one frame period + 10 ms
WINDOWS = 6  # the trend: median age in each sixth of the run


def run_ours(streams: int, duration: float) -> list[list[Any]]:
    with Children() as ch:
        hop = hops.setup(ch, "ours", "tcp")
        consumer = ch.role(
            "fresh_consumer",
            connect=hop.subscribe_to,
            pattern="fresh/",
            streams=streams,
            duration=duration,
        )
        consumer.ready()
        for i in range(streams):
            ch.framebroker(
                f"produce{i}",
                "produce",
                f"test:{WIDTH}x{HEIGHT}@{FPS}",
                "--stream",
                f"fresh/cam{i}",
                "--quality",
                str(QUALITY),
                "--ingest",
                hop.sender["connect"][0],
            )
        result = consumer.result(timeout=duration + 60)
    return [list(s) for s in result["samples"]]


def run_imagezmq(streams: int, duration: float) -> list[list[Any]]:
    with Children() as ch:
        endpoints = [ch.endpoint("tcp") for _ in range(streams)]
        senders = [
            ch.role(
                "izmq_sender",
                name=f"izmq-sender{i}",
                bind=endpoint,
                stream=f"fresh/cam{i}",
                fps=FPS,
                width=WIDTH,
                height=HEIGHT,
                quality=QUALITY,
            )
            for i, endpoint in enumerate(endpoints)
        ]
        for sender in senders:
            sender.ready()
        hub = ch.role("izmq_hub", connect=endpoints, streams=streams, duration=duration)
        hub.ready()
        result = hub.result(timeout=duration + 60)
    return [list(s) for s in result["samples"]]


def summarize(samples: list[list[Any]], duration: float) -> dict[str, Any]:
    ages = [s[2] for s in samples]
    edges = [duration * i / WINDOWS for i in range(WINDOWS + 1)]
    trend = [
        median([s[2] for s in samples if edges[i] <= s[0] < edges[i + 1]]) for i in range(WINDOWS)
    ]
    per_stream: dict[str, int] = {}
    for s in samples:
        per_stream[s[1]] = per_stream.get(s[1], 0) + 1
    return {
        "n": len(ages),
        "median_ms": median(ages),
        "p99_ms": percentile(ages, 99),
        "max_ms": max(ages) if ages else None,
        "trend_ms": trend,  # median age per sixth of the run
        "growth_ms": trend[-1] - trend[0] if trend else None,
        "min_frames_per_stream": min(per_stream.values()) if per_stream else 0,
    }


def run(opts: Options) -> Result:
    plan = opts.pick([(1, 3.0)], [(1, 60.0), (4, 30.0), (16, 30.0)])
    runs: dict[str, dict[str, Any]] = {}
    for streams, duration in plan:
        for impl, runner in (("ours", run_ours), ("imagezmq", run_imagezmq)):
            samples = runner(streams, duration)
            runs[f"{impl}/{streams}"] = {
                "streams": streams,
                "duration_s": duration,
                "summary": summarize(samples, duration),
                "samples": samples,
            }
    return _result(runs, opts)


def _result(runs: dict[str, dict[str, Any]], opts: Options) -> Result:
    rows: list[list[Any]] = []
    targets: list[Target] = []
    for key, r in runs.items():
        impl = key.split("/")[0]
        s = r["summary"]
        rows.append(
            [
                impl,
                r["streams"],
                r["duration_s"],
                s["n"],
                s["median_ms"],
                s["p99_ms"],
                s["max_ms"],
                s["trend_ms"][0],
                s["trend_ms"][-1],
                s["growth_ms"],
            ]
        )
        if impl == "ours":
            n = r["streams"]
            targets.append(
                Target(
                    f"freshness p99, {n} stream(s), {r['duration_s']:g} s (ms)",
                    s["p99_ms"],
                    round(PERIOD_MS + SLACK_MS, 1),
                    "lower",
                    unit="ms",
                )
            )
            targets.append(
                Target(
                    f"freshness trend, {n} stream(s): last - first sixth median (ms)",
                    s["growth_ms"],
                    float(SLACK_MS),
                    "lower",
                    unit="ms",
                )
            )
    from benchmarks import plots

    data = {k: {n: v for n, v in r.items() if n != "samples"} for k, r in runs.items()}
    return Result(
        name="freshness",
        title=f"Freshness: {FPS} fps producers, consumer 100 ms/frame (frame age ms)",
        columns=[
            "impl",
            "streams",
            "seconds",
            "frames",
            "median",
            "p99",
            "max",
            "first 1/6",
            "last 1/6",
            "growth",
        ],
        rows=rows,
        data={"runs": data},
        targets=targets,
        notes=[
            "age = processing start - capture; 'first/last 1/6': median age in the first and "
            "the last sixth of the run; growth = last - first",
        ],
        plots=plots.freshness({k: r["samples"] for k, r in runs.items()}, opts.out),
    )
