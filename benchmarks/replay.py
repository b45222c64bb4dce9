"""Scenario 8, replay timing: how closely ``produce replay:`` keeps a recording's intervals,
and what the polling before each frame costs.

A recording of 30 fps (a 640x480 JPEG per frame, regular capture times) is written with
the recorder's segment writer; :func:`framebroker.producers.replay.play` then plays it
through a ``send`` that only stamps the time (``time.time_ns()``, as ``send_recorded``
does), once per way of waiting: sleeping until each frame is due (``spin`` 0), and
sleeping until ``spin`` ms before it and then polling the clock with ``sched_yield``
between looks. Several replays run at once, each in its own process (as users run them),
on whatever else the machine is doing: the load average is in the heading. The interval
error is |replayed interval - recorded interval| over consecutive frames; CPU is the
replay process's user+system time over the wall time.
"""

from __future__ import annotations

import multiprocessing
import shutil
import time
from pathlib import Path
from typing import Any

import numpy as np

from benchmarks.procs import ROOT
from benchmarks.report import Options, Result, Target

FPS = 30
SPINS_MS = (0.0, 2.0, 4.0)
WORK = ROOT / "build" / "bench-replay"


def write_recording(folder: Path, seconds: float) -> Path:
    from framebroker.protocol import encode_frame
    from framebroker.recording import stream_folder
    from framebroker.segment import SegmentWriter
    from framebroker.testing import make_message

    target = stream_folder(folder, "bench")
    period = int(1e9 / FPS)
    t0 = time.time_ns()
    writer = SegmentWriter(target, t0, fsync_interval=1.0)
    for seq in range(int(seconds * FPS)):
        m = make_message("bench", seq, encoding="jpeg", width=640, height=480,
                         t_capture=t0 + seq * period)  # fmt: skip
        writer.append(encode_frame(m.header, m.payload), m.header)
    writer.close()
    return target


def replay_once(folder: str, spin_s: float, out: Any) -> None:
    """In a child process: play the recording, send the stamps and the CPU time back."""
    from framebroker.producers.replay import play
    from framebroker.recording import open_stream

    stream = open_stream(folder)
    stamps: list[tuple[int, int]] = []  # (replayed, recorded) capture times

    def send(message: Any) -> None:
        stamps.append((time.time_ns(), message.header.t_capture))

    cpu0, wall0 = time.process_time(), time.monotonic()
    play(stream, send, spin=spin_s)
    out.put((stamps, time.process_time() - cpu0, time.monotonic() - wall0))


def measure(folder: Path, spin_ms: float, replays: int) -> dict[str, Any]:
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    procs = [
        ctx.Process(target=replay_once, args=(str(folder), spin_ms / 1e3, queue))
        for _ in range(replays)
    ]
    for p in procs:
        p.start()
    got = [queue.get(timeout=600) for _ in procs]
    for p in procs:
        p.join(30)
    errors: list[float] = []
    cpu = []
    for stamps, cpu_s, wall_s in got:
        sent = np.array([s for s, _ in stamps], dtype=np.int64)
        recorded = np.array([r for _, r in stamps], dtype=np.int64)
        errors += list(np.abs(np.diff(sent) - np.diff(recorded)) / 1e6)
        cpu.append(100 * cpu_s / wall_s)
    return {
        "spin_ms": spin_ms,
        "replays": replays,
        "intervals": len(errors),
        "p50_ms": float(np.percentile(errors, 50)),
        "p95_ms": float(np.percentile(errors, 95)),
        "p99_ms": float(np.percentile(errors, 99)),
        "max_ms": float(max(errors)),
        "cpu_pct": float(np.mean(cpu)),
    }


def run(opts: Options) -> Result:
    WORK.mkdir(parents=True, exist_ok=True)
    replays = opts.pick(2, 4)
    try:
        folder = write_recording(WORK / "rec", opts.pick(2.0, 20.0))
        runs = [measure(folder, spin, replays) for spin in SPINS_MS]
    finally:
        shutil.rmtree(WORK, ignore_errors=True)
    rows = [
        [
            "sleep only" if r["spin_ms"] == 0 else f"sleep, then poll the last {r['spin_ms']:g} ms",
            r["intervals"], r["p50_ms"], r["p95_ms"], r["p99_ms"], r["max_ms"], r["cpu_pct"],
        ]
        for r in runs
    ]  # fmt: skip
    chosen = next(r for r in runs if r["spin_ms"] == 2.0)
    return Result(
        name="replay",
        title=f"Replay timing: {replays} replays of a {FPS} fps recording at once, a process each",
        columns=["waiting", "intervals", "p50 ms", "p95 ms", "p99 ms", "max ms", "CPU % a replay"],
        rows=rows,
        data={"fps": FPS, "replays": replays, "runs": runs},
        targets=[
            Target(
                "replay interval error p95 (ms, polling 2 ms)", chosen["p95_ms"], 5.0, "lower", "ms"
            )
        ],
        notes=[
            "The replay default polls the last 2 ms before each frame (producers/replay.py, "
            "SPIN_S). Errors are what the replay stamps as capture times, as the system test "
            "tests/test_record_replay.py measures them through the broker.",
        ],
    )
