"""Scenario 6, work groups: N workers sharing streams vs N fan-out consumers.

Four ``framebroker produce test:320x240@30`` streams (120 frames/s in all) through our
broker; N = 1, 2, 4, 8 consumers, each spending 100 ms per frame (so one handles ~10
frames/s), run either as one work group (``--group``: each frame to at most one worker)
or as N independent fan-out subscribers (every consumer gets every frame and picks the
newest). Over a measured window:

- processed/s: frames the N consumers started on; unique/s: distinct frames among them
  (fan-out consumers often pick the same frame); age at processing start;
- received per processed frame: frames that crossed the network per frame processed
  (fan-out: every frame to every consumer; a group: only the frames handed out).

The supply (120 frames/s) exceeds what 8 workers take (80/s), so the group should scale
linearly: the target is unique frames/s at N workers >= 0.9 x N x one worker's, with the
freshness target of scenario 1 (p99 <= one frame period + 10 ms).
"""

from __future__ import annotations

import time
from typing import Any

from benchmarks import hops
from benchmarks.numbers import median, percentile, ratio
from benchmarks.procs import Child, Children, mark_all
from benchmarks.report import Options, Result, Target

STREAMS, FPS = 4, 30
PERIOD_MS = 1000 / FPS
SLACK_MS = 10
MODES = ("group", "fan-out")


def measure(mode: str, workers: int, window: float, settle: float = 2.5) -> dict[str, Any]:
    with Children() as ch:
        hop = hops.setup(ch, "ours", "tcp")
        for i in range(STREAMS):
            ch.framebroker(
                f"produce{i}",
                *("produce", f"test:320x240@{FPS}", "--stream", f"grp/cam{i}"),
                *("--ingest", hop.sender["connect"][0]),
            )
        children = [
            ch.role(
                "work_consumer",
                name=f"w{i}",
                consumer=f"w{i}",
                publish=hop.subscribe_to,
                work=hop.work,
                group="bench" if mode == "group" else None,
                pattern="grp/",
            )
            for i in range(workers)
        ]
        for child in children:
            child.ready(timeout=60)
        time.sleep(settle)  # every worker joined, every stream flowing
        mark_all(*children)
        time.sleep(window)
        mark_all(*children)
        results = [child.stop() for child in children]
    return _figures(results, children, window)


def _figures(
    results: list[dict[str, Any] | None], children: list[Child], window: float
) -> dict[str, float]:
    processed, received = 0, 0
    frames: set[tuple[str, int]] = set()
    ages: list[float] = []
    for child, result in zip(children, results, strict=True):
        if result is None:
            raise RuntimeError(f"{child.name} reported nothing")
        (t0, n0, r0), (t1, n1, r1) = result["marks"][:2]
        processed += n1 - n0
        received += r1 - r0
        inside = [s for s in result["samples"] if t0 <= s[0] < t1]
        frames.update((s[1], s[2]) for s in inside)
        ages.extend(s[3] for s in inside)
    return {
        "processed_per_s": processed / window,
        "unique_per_s": len(frames) / window,
        "duplicate_pct": 100 * (1 - len(frames) / processed) if processed else float("nan"),
        "received_per_processed": ratio(received, processed),
        "age_median_ms": median(ages),
        "age_p99_ms": percentile(ages, 99),
        "age_max_ms": max(ages) if ages else float("nan"),
    }


def run(opts: Options) -> Result:
    counts, window = opts.pick(((1, 2), 3.0), ((1, 2, 4, 8), 15.0))
    runs: dict[str, dict[int, dict[str, Any]]] = {mode: {} for mode in MODES}
    for n in counts:
        for mode in MODES:
            runs[mode][n] = measure(mode, n, window)
    rows: list[list[Any]] = []
    targets: list[Target] = []
    one = runs["group"][counts[0]]["unique_per_s"]
    for n in counts:
        for mode in MODES:
            f = runs[mode][n]
            rows.append(
                [
                    mode,
                    n,
                    f["processed_per_s"],
                    f["unique_per_s"],
                    ratio(f["unique_per_s"], one),
                    f["duplicate_pct"],
                    f["received_per_processed"],
                    f["age_median_ms"],
                    f["age_p99_ms"],
                    f["age_max_ms"],
                ]
            )
        g = runs["group"][n]
        if n > 1:
            targets.append(
                Target(
                    f"work group, {n} workers: unique frames/s / ({n} x one worker's)",
                    ratio(g["unique_per_s"], n * one),
                    0.9,
                    "higher",
                )
            )
        targets.append(
            Target(
                f"work group, {n} worker(s): frame age p99 (ms)",
                g["age_p99_ms"],
                round(PERIOD_MS + SLACK_MS, 1),
                "lower",
                unit="ms",
            )
        )
    from benchmarks import plots

    return Result(
        name="groups",
        title=f"Work groups: {STREAMS} streams x {FPS} fps, consumers 100 ms/frame, "
        f"{window:g} s windows",
        columns=[
            "mode",
            "consumers",
            "processed/s",
            "unique/s",
            "speed-up",
            "dup %",
            "recv/processed",
            "age median",
            "age p99",
            "age max",
        ],
        rows=rows,
        data={"runs": {mode: {str(n): f for n, f in r.items()} for mode, r in runs.items()}},
        targets=targets,
        notes=[
            "unique/s: distinct (stream, seq) among the frames all consumers started on; "
            "speed-up: unique/s over one group worker's",
            "recv/processed: frames delivered to the consumers per frame processed (the "
            "bandwidth a consumer's link carries per useful frame)",
            "age (ms) = processing start - capture",
        ],
        plots=plots.groups(runs, opts.out),
    )
