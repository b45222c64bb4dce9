"""`framebroker demo`: its parts (specs, process supervision, progress) and a full run."""

from __future__ import annotations

import contextlib
import os
import random
import re
import signal
import socket
import statistics
import subprocess
import sys
from pathlib import Path

import pytest

from framebroker.demo.cli import DemoConfig, check_ports_free, child_specs
from framebroker.demo.cluster import ChildSpec, Cluster
from framebroker.demo.progress import Snapshot, StreamRow, render_line, render_summary, render_table
from framebroker.errors import ConfigError, TransportError
from framebroker.sink.store import AgeSummary
from framebroker.testing import wait_until
from tests.conftest import query_db


def alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except (OSError, IndexError):
        return True
    return state != "Z"


def free_port_base() -> int:
    """A base port whose demo ports (DemoConfig) are all free right now.

    Below Linux's ephemeral range (32768-60999 by default): a port the kernel hands out
    to some outgoing connection between this check and the demo's bind would fail the
    demo with "Address already in use" (seen under a loaded suite).
    """
    for _ in range(200):
        base = random.randrange(20_000, 32_000)
        try:
            check_ports_free(DemoConfig(port_base=base))
        except TransportError:
            continue
        return base
    raise RuntimeError("no free block of ports")


# --- parts -----------------------------------------------------------------------------------


def test_child_specs_wire_everything_to_the_port_block(tmp_path):
    config = DemoConfig(port_base=20000, producers=3, consumers=5, db=str(tmp_path / "d.db"))
    specs = {spec.name: spec.args for spec in child_specs(config)}
    assert list(specs) == [
        "broker",
        "sink",
        "consumer stats",
        "consumer motion",
        "consumer qr",
        "consumer faces",
        "consumer stats-2",
        "producer demo/cam1",
        "producer demo/cam2",
        "producer demo/cam3",
    ]
    broker = specs["broker"]
    assert broker[broker.index("--ingest") + 1] == "tcp://127.0.0.1:20000"
    assert broker[broker.index("--publish") + 1] == "tcp://127.0.0.1:20001"
    assert broker[broker.index("--control") + 1] == "tcp://127.0.0.1:20003"
    assert specs["sink"][1:] == (
        "--results",
        "tcp://127.0.0.1:20002",
        "--db",
        str(tmp_path / "d.db"),
    )
    motion = specs["consumer motion"]
    assert motion[:2] == ("consume", "motion")
    assert motion[motion.index("--results") + 1] == "tcp://127.0.0.1:20002"
    cam3 = specs["producer demo/cam3"]
    assert cam3[:2] == ("produce", "test:640x480@30")
    assert cam3[cam3.index("--ingest") + 1] == "tcp://127.0.0.1:20000"


def test_demo_config_is_validated():
    for bad in ({"port_base": 65534}, {"producers": 0}, {"consumers": 0}, {"duration": -1}):
        with pytest.raises(ConfigError):
            DemoConfig(**bad)


def test_busy_port_is_reported():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        with pytest.raises(TransportError, match=f"port {port} .* not free"):
            check_ports_free(DemoConfig(port_base=port))  # the first port checked


def snapshot() -> Snapshot:
    return Snapshot(
        elapsed_s=7.0,
        streams=(StreamRow("demo/cam1", "live", 29.9, 210), StreamRow("demo/cam2", "stale", 0, 5)),
        results={"demo/cam1": 400},
        ages={"demo/cam1": AgeSummary(400, 12_300_000, 45_000_000)},
    )


def test_progress_table_and_line():
    table = render_table(snapshot(), "framebroker demo")
    assert "results stored: 400" in table[0]
    assert table[2].split() == [
        "demo/cam1",
        "live",
        "29.9",
        "210",
        "400",
        "12.3",
        "ms",
        "45.0",
        "ms",
    ]
    assert table[3].split() == ["demo/cam2", "stale", "0.0", "5", "0", "-", "-"]
    line = render_line(snapshot())
    assert "results 400" in line and "demo/cam1 29.9 fps 210 frames age 12/45 ms" in line
    summary = render_summary(snapshot(), Path("/x/d.db"))
    assert "ran 7.0 s" in summary[0]
    assert any("framebroker results --db /x/d.db" in s for s in summary)


SCRIPT = """
import os, signal, subprocess, sys, time
mode = sys.argv[1]
print("child", mode, "started", flush=True)
if mode == "exit3":
    sys.exit(3)
if mode == "stubborn":
    signal.signal(signal.SIGTERM, signal.SIG_IGN)
if mode == "leaves-helper":
    helper = subprocess.Popen([sys.executable, "-c", "import time; time.sleep(60)"])
    print("helper", helper.pid, flush=True)
    signal.signal(signal.SIGTERM, lambda *_: os._exit(0))
time.sleep(60)
"""


@pytest.fixture
def cluster(tmp_path):
    made = Cluster(tmp_path / "logs", command=(sys.executable, "-c", SCRIPT))
    yield made
    made.stop(grace=1.0)


def test_cluster_reports_early_death_with_log_tail(cluster):
    quitter = cluster.start(ChildSpec("quitter", ("exit3",)))
    steady = cluster.start(ChildSpec("steady", ("sleep",)))
    wait_until(lambda: bool(cluster.exited()))
    assert [c.name for c in cluster.exited()] == ["quitter"]
    assert quitter.returncode == 3
    assert "child exit3 started" in quitter.log_tail()
    cluster.stop()
    assert steady.returncode == -signal.SIGTERM and not steady.killed
    assert not alive(steady.pid)


def test_cluster_kills_what_ignores_sigterm_and_leftover_helpers(cluster):
    stubborn = cluster.start(ChildSpec("stubborn", ("stubborn",)))
    parent = cluster.start(ChildSpec("parent", ("leaves-helper",)))
    found = wait_until(
        lambda: "started" in stubborn.log_tail() and re.search(r"helper (\d+)", parent.log_tail())
    )
    helper = int(found[1])
    assert alive(helper)
    cluster.stop(grace=1.0)
    assert stubborn.killed and stubborn.returncode == -signal.SIGKILL
    assert parent.returncode == 0 and not parent.killed
    wait_until(lambda: not alive(helper), timeout=5)


# --- the whole demo --------------------------------------------------------------------------


@pytest.fixture
def demo_process():
    started: list[subprocess.Popen] = []

    def run(*args: str) -> subprocess.Popen:
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebroker", "demo", *args],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )
        started.append(proc)
        return proc

    yield run
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        output = getattr(proc, "captured", None)
        if output is None and proc.stdout and not proc.stdout.closed:
            output = proc.stdout.read()
        for pid in child_pids(output or ""):
            if alive(pid):
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(pid, signal.SIGKILL)
        if proc.stdout and not proc.stdout.closed:
            proc.stdout.close()


def child_pids(output: str) -> list[int]:
    return [int(pid) for pid in re.findall(r"demo: started .* \(pid (\d+)\)", output)]


def finish(proc: subprocess.Popen, timeout: float = 90) -> tuple[int, str]:
    try:
        output, _ = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        os.kill(proc.pid, signal.SIGINT)
        output, _ = proc.communicate(timeout=30)
        proc.captured = output
        pytest.fail(f"demo did not finish within {timeout} s:\n{output}")
    proc.captured = output  # for the fixture's clean-up
    return proc.returncode, output


@pytest.mark.slow
def test_demo_runs_stores_results_and_cleans_up(tmp_path, demo_process):
    base = free_port_base()
    db = tmp_path / "demo.sqlite"
    proc = demo_process(
        "--duration", "8", "--port-base", str(base), "--db", str(db), "--log-dir", str(tmp_path)
    )
    code, output = finish(proc)
    assert code == 0, output
    assert "framebroker demo summary" in output
    pids = child_pids(output)
    assert len(pids) == 6, output  # broker, sink, 2 consumers, 2 producers
    assert not [pid for pid in pids if alive(pid)], "children left running"
    check_ports_free(DemoConfig(port_base=base))  # every port is free again

    rows = query_db(db, "SELECT stream, consumer, age_ns FROM results")
    streams = {stream for stream, _, _ in rows}
    assert streams == {"demo/cam1", "demo/cam2"}, output
    assert {consumer for _, consumer, _ in rows} == {"stats", "motion"}
    for stream in streams:
        ages = [age for s, _, age in rows if s == stream]
        assert min(ages) >= 0
        assert statistics.median(ages) < 1_000_000_000  # well under a second old
    summary = output[output.index("framebroker demo summary") :]
    assert re.search(r"demo/cam1\s+\w+\s+[\d.]+\s+\d+\s+\d+\s+[\d.]+ ms", summary), summary


@pytest.mark.slow
def test_demo_fails_when_a_child_dies_early(tmp_path, demo_process):
    base = free_port_base()
    proc = demo_process(
        "--duration", "60", "--port-base", str(base), "--db", str(tmp_path / "d.sqlite"),
        "--source", "test:nonsense", "--producers", "1", "--consumers", "1",
    )  # fmt: skip
    code, output = finish(proc)
    assert code == 1, output
    assert "FAILED: producer demo/cam1" in output
    assert "exited early" in output
    assert "nonsense" in output  # the tail of the producer's own error output
    assert not [pid for pid in child_pids(output) if alive(pid)]
