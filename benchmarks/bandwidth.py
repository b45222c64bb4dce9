"""Scenario bandwidth (issue 14): consumers behind links slower and faster than their stream.

Hosts are Linux network namespaces on a private switch (tests/netns.py, the same hosts the
slow-link tests use; needs root and iproute2). ``central`` runs the broker, the sink and
one 640x480 30 fps JPEG test-pattern camera; the stream's bandwidth B is measured there
(mean frame size x 30 fps). Each other host sits behind its own cable shaped with ``tc
tbf`` towards it, at 0.5 x B, 1 x B and 2 x B, and runs one consumer of the stream:

- ``feed``: a default ``framebroker consume`` (frames by credit, protocol v1.6);
- ``plain SUB``: ``consume --plain-sub`` (what every consumer did before feeds);
- ``group``: ``consume --group`` (a work group of one worker).

All nine run at the same time for the window (60 s; 8 s with ``--quick``), each storing a
result per frame it processes; the frame age (processing start - capture) comes from the
sink's database: p50, p99, and the trend, the median of the last 10 s over the first 10 s
(a queue that grows shows as a trend far above 1).

Then, on loopback, eight consumers of one raw 1080p30 stream on the camera's host (6.2 MB
frames): by default through shared memory, and with ``--no-shm`` as feeds over TCP.
"""

from __future__ import annotations

import json
import secrets
import sqlite3
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

from benchmarks.numbers import median, percentile
from benchmarks.report import Options, Result, Target
from framebroker.testing import wait_until
from tests.conftest import CliProcesses, free_port
from tests.netns import Network, framebroker, missing

FPS = 30
PERIOD_MS = 1000 / FPS
MARGIN_MS = 60  # scheduling on a shared 2-core machine, as tests/test_feeds_link.py
RATES = (0.5, 1.0, 2.0)
MODES = {"feed": (), "plain SUB": ("--plain-sub",), "group": ("--group", "GROUP")}
POLL_S = 0.25  # waits poll the sink's database and `streams` this often
NOOP = "def process(frame):\n    return {'seq': frame.seq}\n"
STREAM = "bw/cam"


def _hosts(rates: tuple[float, ...]) -> dict[str, tuple[str, float]]:
    """Host name -> (mode, rate) for every run."""
    out = {}
    for m, mode in enumerate(MODES):
        for r, rate in enumerate(rates):
            out[f"c{m}{r}"] = (mode, rate)
    return out


def _rows(db: Path, since: int) -> list[tuple[str, int, float]]:
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
        cur = conn.execute(
            "SELECT consumer, t_start, age_ns FROM results WHERE t_start >= ?", (since,)
        )
        return [(c, t, a / 1e6) for c, t, a in cur.fetchall()]


def _consumers(db: Path) -> set[str]:
    try:
        with sqlite3.connect(f"file:{db}?mode=ro", uri=True) as conn:
            return {c for (c,) in conn.execute("SELECT DISTINCT consumer FROM results")}
    except sqlite3.Error:
        return set()


def _frame_bytes(central: Any) -> float:
    def measured() -> float:
        result = central.run(*framebroker("streams", "--broker", "broker", "--json"))
        if result.returncode != 0:
            return 0.0
        reply = json.loads(result.stdout)
        entries = reply.get("streams", reply) if isinstance(reply, dict) else reply
        sizes = [e["bytes"] / e["frames"] for e in entries if e.get("frames", 0) >= FPS]
        return statistics.mean(sizes) if sizes else 0.0

    return float(wait_until(measured, 30, "the camera's stream", interval=POLL_S))


def _figures(ages: list[tuple[int, float]], start: int, end: int, trend_s: float) -> dict:
    values = [a for _, a in ages]
    edge = int(trend_s * 1e9)
    first = median([a for t, a in ages if t < start + edge])
    last = median([a for t, a in ages if t >= end - edge])
    return {
        "frames_per_s": len(values) / ((end - start) / 1e9),
        "age_p50_ms": median(values),
        "age_p99_ms": percentile(values, 99),
        "first_ms": first,
        "last_ms": last,
        "trend": last / first if first else float("nan"),
    }


def slow_links(window: float, rates: tuple[float, ...], workdir: Path) -> dict[str, Any]:
    hosts = _hosts(rates)
    subnet = f"10.85.{secrets.randbelow(250) + 1}"
    names = ["central", *hosts]
    with Network(workdir, names, {"broker": "central"}, tag="fbbw", subnet=subnet) as net:
        central = net["central"]
        db = central.workdir / "results.sqlite"
        central.start(*framebroker("broker", "--log-stats", "0"))
        central.start(*framebroker("sink", "--db", str(db)))
        central.start(*framebroker("produce", f"test:640x480@{FPS}", "--stream", STREAM))
        frame_bytes = _frame_bytes(central)
        stream_bits = frame_bytes * 8 * FPS
        for host, (mode, rate) in hosts.items():
            net[host].throttle(f"{max(64, int(stream_bits * rate / 1000))}kbit")
            (net[host].workdir / "noop.py").write_text(NOOP)
            flags = [host if f == "GROUP" else f for f in MODES[mode]]
            net[host].start(
                *framebroker("consume", "noop.py:process", "--name", host, "--streams", STREAM),
                *("--broker", "broker", *flags),
            )
        every = "a result from every consumer"
        wait_until(lambda: _consumers(db) >= set(hosts), 90, every, interval=POLL_S)
        start = time.time_ns()
        time.sleep(window)
        end = time.time_ns()
        rows = _rows(db, start)
    by: dict[str, list[tuple[int, float]]] = {h: [] for h in hosts}
    for consumer, t, age in rows:
        if consumer in by and t < end:
            by[consumer].append((t, age))
    trend_s = min(10.0, window / 4)
    runs = {}
    for host, (mode, rate) in hosts.items():
        runs[f"{mode}/{rate:g}"] = {
            "mode": mode,
            "rate": rate,
            "link_mbit": stream_bits * rate / 1e6,
            **_figures(by[host], start, end, trend_s),
        }
    transfer_ms = frame_bytes * 8 / (stream_bits * min(rates)) * 1000
    return {
        "frame_bytes": frame_bytes,
        "stream_mbit": stream_bits / 1e6,
        "transfer_ms_slowest": transfer_ms,
        "trend_s": trend_s,
        "runs": runs,
    }


def eight_raw(window: float, shm: bool, workdir: Path) -> dict[str, Any]:
    """Eight consumers of one raw 1080p30 stream on its host, on loopback."""
    procs = CliProcesses(workdir)
    ingest, publish, control, work, results = (f"tcp://127.0.0.1:{free_port()}" for _ in range(5))
    db = workdir / "results.sqlite"
    (workdir / "noop.py").write_text(NOOP)
    try:
        procs.start(
            "broker", *("--ingest", ingest, "--publish", publish, "--control", control),
            *("--work", work, "--log-stats", "0"),
        )  # fmt: skip
        procs.start("sink", "--results", results, "--db", str(db))
        procs.start(
            "produce", "test:1920x1080@30", "--encoding", "raw", "--stream", "raw1",
            "--ingest", ingest,
        )  # fmt: skip
        names = [f"r{i}" for i in range(8)]
        for name in names:
            procs.start(
                "consume", f"{workdir / 'noop.py'}:process", "--name", name, "--streams", "raw1",
                *("--publish", publish, "--work", work, "--results", results),
                "--shm" if shm else "--no-shm",
            )  # fmt: skip
        every = "a result from every consumer"
        wait_until(lambda: _consumers(db) >= set(names), 90, every, interval=POLL_S)
        start = time.time_ns()
        time.sleep(window)
        end = time.time_ns()
        rows = _rows(db, start)
    finally:
        procs.stop_all()
    by: dict[str, list[float]] = {}
    for consumer, t, age in rows:
        if t < end:
            by.setdefault(consumer, []).append(age)
    seconds = (end - start) / 1e9
    return {
        "frames_per_s_min": min(len(a) for a in by.values()) / seconds,
        "age_p50_ms": median([median(a) for a in by.values()]),
        "age_p99_ms_max": max(percentile(a, 99) for a in by.values()),
        "age_p99_ms_min": min(percentile(a, 99) for a in by.values()),
    }


def run(opts: Options) -> Result:
    what = missing()
    if what is not None:
        raise RuntimeError(f"the bandwidth scenario needs {what} (network namespaces)")
    window, rates, raw_window = opts.pick((8.0, (0.5,), 4.0), (60.0, RATES, 10.0))
    with tempfile.TemporaryDirectory(prefix="fb-bandwidth-") as tmp:
        links = slow_links(window, rates, Path(tmp) / "links")
        raw = {}
        for shm in (True, False):
            (Path(tmp) / f"raw-{shm}").mkdir()
            raw["shared memory" if shm else "network (--no-shm)"] = eight_raw(
                raw_window, shm, Path(tmp) / f"raw-{shm}"
            )
    rows = [
        [r["mode"], r["rate"], r["link_mbit"], r["frames_per_s"], r["age_p50_ms"],
         r["age_p99_ms"], r["first_ms"], r["last_ms"], r["trend"]]
        for r in links["runs"].values()
    ]  # fmt: skip
    bound = links["transfer_ms_slowest"] + PERIOD_MS + MARGIN_MS
    slowest = links["runs"][f"feed/{min(rates):g}"]
    targets = [
        Target(f"feed at {min(rates):g}x: frame age p99 (ms)", slowest["age_p99_ms"],
               round(bound, 1), "lower", unit="ms"),
        Target(f"feed at {min(rates):g}x: last/first median (trend)", slowest["trend"], 1.2,
               "lower"),
    ]  # fmt: skip
    for path, r in raw.items():
        limit = 2 * PERIOD_MS
        targets.append(
            Target(f"8 raw 1080p consumers, {path}: worst p99 (ms)", r["age_p99_ms_max"],
                   round(limit, 1), "lower", unit="ms")
        )  # fmt: skip
    raw_rows = [
        [path, 8, r["frames_per_s_min"], r["age_p50_ms"], r["age_p99_ms_min"], r["age_p99_ms_max"]]
        for path, r in raw.items()
    ]
    return Result(
        name="bandwidth",
        title=f"Bandwidth: one 640x480 {FPS} fps JPEG stream ({links['stream_mbit']:.1f} Mbit/s) "
        f"to consumers behind tc-shaped links, {window:g} s",
        columns=[
            "mode",
            "link x stream",
            "link Mbit/s",
            "frames/s",
            "age p50",
            "age p99",
            "first median",
            "last median",
            "trend",
        ],
        rows=rows,
        extra_tables=[
            (
                f"Eight consumers of one raw 1080p30 stream on its host, {raw_window:g} s:",
                ["path", "consumers", "frames/s (min)", "age p50", "p99 (best)", "p99 (worst)"],
                raw_rows,
            )
        ],
        data={"links": links, "raw_1080p": raw},
        targets=targets,
        notes=[
            "age (ms) = processing start - capture, from the sink's database; every consumer "
            "runs a no-op processor",
            f"first/last median: the median age of the first and the last "
            f"{links['trend_s']:g} s of the window; trend = last / first (a growing queue: "
            "far above 1)",
            f"feed p99 target: one frame's transfer at the slowest link "
            f"({links['transfer_ms_slowest']:.0f} ms) + one frame period + {MARGIN_MS} ms",
        ],
    )
