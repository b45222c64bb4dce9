"""The same-host fast path: every bind and connect of the pipeline over ipc://, via the CLI.

Broker (ingest, publish, control), sink (results), producer, consumer and `framebroker
streams` all take ipc:// endpoints: Unix domain sockets in a private directory.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, query_db, wait_until


@pytest.fixture
def sockets_dir() -> Iterator[Path]:
    # Short path: a Unix socket path must fit in ~107 bytes, pytest's tmp_path may not.
    path = Path(tempfile.mkdtemp(prefix="fb-ipc-"))
    try:
        yield path
    finally:
        shutil.rmtree(path, ignore_errors=True)


@pytest.mark.slow
def test_pipeline_over_ipc_endpoints(cli, tmp_path, sockets_dir):
    ep = {
        name: f"ipc://{sockets_dir}/{name}" for name in ("ingest", "publish", "control", "results")
    }
    db = tmp_path / "results.sqlite"
    broker = cli.start(
        "broker", "--ingest", ep["ingest"], "--publish", ep["publish"], "--control", ep["control"]
    )
    sink = cli.start("sink", "--results", ep["results"], "--db", str(db))
    producer = cli.start(
        "produce", "test:160x120@15", "--stream", "local/cam1", "--ingest", ep["ingest"]
    )
    consumer = cli.start(
        "consume",
        "stats",
        "--streams",
        "local/",
        "--name",
        "ipc-stats",
        "--publish",
        ep["publish"],
        "--results",
        ep["results"],
    )

    def results_stored() -> int:
        rows = query_db(
            db,
            "SELECT count(*) FROM results WHERE stream = ? AND consumer = ?",
            "local/cam1",
            "ipc-stats",
        )
        return bool(rows) and int(rows[0][0]) >= 3

    wait_until(results_stored, timeout=30)
    # libzmq would let a second broker take the live paths over; framebroker refuses.
    second = cli.start(
        "broker",
        "--ingest",
        ep["ingest"],
        "--publish",
        f"{ep['publish']}2",
        "--control",
        f"{ep['control']}2",
    )
    assert second.wait(30) == 1
    assert "another process is listening" in cli.output(second)
    listing = subprocess.run(
        [sys.executable, "-m", "framebroker", "streams", "--control", ep["control"], "--json"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
    )
    assert listing.returncode == 0, listing.stderr
    streams = json.loads(listing.stdout)["streams"]
    assert [(s["stream"], s["state"]) for s in streams] == [("local/cam1", "live")]
    for proc in (consumer, producer, sink, broker):
        assert cli.stop(proc) == 0, cli.output(proc)
    # libzmq leaves the socket files behind; a restarted broker binds over them.
    again = cli.start(
        "broker", "--ingest", ep["ingest"], "--publish", ep["publish"], "--control", ep["control"]
    )
    ping = [sys.executable, "-m", "framebroker", "streams", "--control", ep["control"]]
    wait_until(lambda: subprocess.run(ping, capture_output=True, timeout=30).returncode == 0)
    assert cli.stop(again) == 0, cli.output(again)
