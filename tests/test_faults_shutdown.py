"""Graceful shutdown: SIGTERM and SIGINT stop every service within 5 s, flushing what it owes.

Every long-running command (broker, sink, produce, consume with one and with two workers,
view, demo) is a real CLI process under load. Each is signalled while it works and must
exit within ``STOP_BOUND_S`` with exit code 0 (SIGTERM) or 130 (SIGINT, as after Ctrl-C):

- a consumer stores what it made: every result it printed is in the sink's database
  (it waits for the sink's acknowledgements before exiting);
- the sink stores what it received: its closing log line's ``stored`` equals the rows in
  the database, nothing dropped, while a consumer keeps sending to it until it is gone;
- the others release their sockets without hanging on LINGER.
"""

from __future__ import annotations

import json
import re
import signal
import subprocess
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from tests.conftest import free_port, query_db, wait_until
from tests.test_demo import child_pids, free_port_base
from tests.test_faults_sink import results_port

STOP_BOUND_S = 5.0  # issue 7
EXPECTED_CODE = {signal.SIGTERM: 0, signal.SIGINT: 130}
SIGNALS = [pytest.param(signal.SIGTERM, id="SIGTERM"), pytest.param(signal.SIGINT, id="SIGINT")]


def rows(db: Path, sql: str, *args: object) -> list[tuple]:
    return query_db(db, sql, *args)


def count(db: Path) -> int:
    found = rows(db, "SELECT count(*) FROM results")
    return int(found[0][0]) if found else 0


def printed_keys(text: str) -> set[tuple[str, str, int, int]]:
    keys = set()
    for line in text.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            keys.add((r["consumer"], r["stream"], r["session"], r["seq"]))
    return keys


def signal_and_time(proc: subprocess.Popen, how: signal.Signals) -> float:
    """Send ``how``; the seconds until the process exited (fails after 3x the bound)."""
    began = time.monotonic()
    proc.send_signal(how)
    try:
        proc.wait(STOP_BOUND_S * 3)
    except subprocess.TimeoutExpired:
        pytest.fail(f"pid {proc.pid} still running {STOP_BOUND_S * 3:g} s after {how.name}")
    return time.monotonic() - began


@pytest.mark.slow
@pytest.mark.parametrize("how", SIGNALS)
def test_every_service_stops_on_signal_and_flushes(cli, tmp_path, how):
    ingest, publish, control, http = (free_port() for _ in range(4))
    results = results_port()
    db = tmp_path / "results.sqlite"
    endpoints = {
        "publish": ("--publish", f"tcp://127.0.0.1:{publish}"),
        "results": ("--results", f"tcp://127.0.0.1:{results}"),
    }
    broker = cli.start(
        *("broker", "--ingest", f"tcp://127.0.0.1:{ingest}", *endpoints["publish"]),
        *("--control", f"tcp://127.0.0.1:{control}"),
    )
    sink = cli.start("sink", *endpoints["results"], "--db", str(db))
    producer = cli.start(
        "produce", "test:160x120@20", "--stream", "sd/cam", "--ingest", f"tcp://127.0.0.1:{ingest}"
    )
    consumers = {
        name: cli.start(
            *("consume", "stats", "--streams", "sd/", "--name", name, "--print"),
            *extra,
            *endpoints["publish"],
            *endpoints["results"],
        )
        for name, extra in (("one", ()), ("two", ("--workers", "2")), ("late", ()))
    }
    view = cli.start(
        *("view", *endpoints["publish"], "--control", f"tcp://127.0.0.1:{control}"),
        *("--db", str(db), "--http-host", "127.0.0.1", "--http-port", str(http)),
    )

    def all_storing() -> bool:
        """every consumer (and both workers) has results stored"""
        names = {r[0] for r in rows(db, "SELECT DISTINCT consumer FROM results")}
        return {"one", "two-0", "two-1", "late"} <= names

    def view_serving() -> bool:
        """the viewer lists the stream"""
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{http}/api/streams", timeout=2) as r:
                return "sd/cam" in r.read().decode()
        except OSError:
            return False

    wait_until(all_storing, timeout=60)
    wait_until(view_serving, timeout=30)

    took: dict[str, float] = {}

    def stop(name: str, proc: subprocess.Popen) -> str:
        took[name] = signal_and_time(proc, how)
        output = cli.output(proc)
        assert proc.returncode == EXPECTED_CODE[how], f"{name}: {proc.returncode}\n{output}"
        return output

    # Consumers: every result they made is stored (they wait for the acknowledgements).
    for name in ("one", "two"):
        output = stop(f"consume {name}", consumers[name])
        made = printed_keys(output)
        assert made, output
        stored = set(rows(db, "SELECT consumer, stream, session, seq FROM results"))
        assert made <= stored, f"{len(made - stored)} results of {name} not stored\n{output}"
        assert "results not acknowledged" not in output
    stop("view", view)

    # The sink, while the "late" consumer and the producer still run: what it received is
    # in the database when it exits.
    output = stop("sink", sink)
    closed = re.search(r"(\d+) received, (\d+) stored, (\d+) duplicates, \d+ malformed, (\d+) "
                       r"dropped", output)  # fmt: skip
    assert closed, output
    received, stored, duplicates, dropped = map(int, closed.groups())
    in_db = count(db)
    assert stored > 0 and dropped == 0, output
    assert in_db == stored, f"sink said {stored} stored, the database has {in_db}"
    assert received == stored + duplicates, output

    # The "late" consumer now has a dead sink and unacknowledged results: it still stops in
    # time (it gives up on the acknowledgements after 2 s).
    stop("consume late", consumers["late"])
    stop("produce", producer)
    stop("broker", broker)

    print(f"\n{how.name}: " + ", ".join(f"{name} {s:.2f} s" for name, s in took.items()))
    slow = {name: s for name, s in took.items() if s >= STOP_BOUND_S}
    assert not slow, slow


@pytest.mark.slow
@pytest.mark.parametrize("how", SIGNALS)
def test_demo_stops_on_signal_with_its_children(tmp_path, how):
    base = free_port_base()
    db = tmp_path / "demo.sqlite"
    out = tmp_path / "demo.log"
    with open(out, "w") as log:
        proc = subprocess.Popen(
            [
                *(sys.executable, "-m", "framebroker", "demo", "--port-base", str(base)),
                *("--db", str(db), "--log-dir", str(tmp_path), "--source", "test:160x120@15"),
            ],
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    pids: list[int] = []
    try:
        wait_until(lambda: count(db) > 10, timeout=60)
        pids = child_pids(out.read_text())
        took = signal_and_time(proc, how)
        output = out.read_text()
        assert proc.returncode == EXPECTED_CODE[how], output
        assert "framebroker demo summary" in output
        assert "killed" not in output, output  # every child stopped by itself
        print(f"\ndemo stopped by {how.name} in {took:.2f} s")
        assert took < STOP_BOUND_S, output
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        for pid in pids:
            try:
                Path(f"/proc/{pid}").stat()
            except FileNotFoundError:
                continue
            subprocess.run(["kill", "-9", str(pid)], check=False)
