"""Sink restarts lose no result and store none twice (acknowledged delivery, protocol v1.1).

A consumer (the real CLI, ``--print`` so every result it made is on its stdout) keeps
working while the sink is stopped with SIGTERM, restarted, killed with SIGKILL and
restarted again on the same ports and database. Every result the consumer made must be
in the database exactly once.
"""

from __future__ import annotations

import json
import signal
import socket
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, query_db, wait_until

DOWN_S = 2.0  # the sink stays away this long each time


def results_port() -> int:
    """A free port P whose acknowledged results port P + 2 and control port P + 4 are free
    too."""
    while True:
        port = free_port()
        if port + 4 < 65536:
            try:
                with socket.socket() as a, socket.socket() as b:
                    a.bind(("127.0.0.1", port + 2))
                    b.bind(("127.0.0.1", port + 4))
                return port
            except OSError:
                continue


def stored_keys(db: Path) -> list[tuple[str, str, int, int]]:
    return query_db(db, "SELECT consumer, stream, session, seq FROM results")


def stored_since(db: Path, since_ns: int) -> int:
    rows = query_db(db, "SELECT count(*) FROM results WHERE received_ns >= ?", since_ns)
    return int(rows[0][0]) if rows else 0


def printed_keys(text: str) -> list[tuple[str, str, int, int]]:
    keys = []
    for line in text.splitlines():
        if line.startswith("{"):
            r = json.loads(line)
            keys.append((r["consumer"], r["stream"], r["session"], r["seq"]))
    return keys


@pytest.mark.slow
def test_sink_sigterm_and_kill9_lose_nothing_and_store_nothing_twice(cli, tmp_path):
    ingest, publish, control = free_port(), free_port(), free_port()
    results = results_port()
    db = tmp_path / "results.sqlite"
    sink_args = ("sink", "--results", f"tcp://127.0.0.1:{results}", "--db", str(db))
    cli.start(
        "broker",
        *("--ingest", f"tcp://127.0.0.1:{ingest}", "--publish", f"tcp://127.0.0.1:{publish}"),
        *("--control", f"tcp://127.0.0.1:{control}"),
    )
    sink = cli.start(*sink_args)
    source = ("test:160x120@20", "--ingest", f"tcp://127.0.0.1:{ingest}")
    producers = [cli.start("produce", *source, "--stream", f"faults/cam{i}") for i in range(2)]
    consumer = cli.start(
        *("consume", "stats", "--streams", "faults/", "--name", "c1", "--print"),
        *("--publish", f"tcp://127.0.0.1:{publish}", "--results", f"tcp://127.0.0.1:{results}"),
    )
    wait_until(lambda: len(stored_keys(db)) >= 20, timeout=30)

    recoveries = []
    for how in (signal.SIGTERM, signal.SIGKILL):
        sink.send_signal(how)
        sink.wait(10)
        if how == signal.SIGTERM:
            assert sink.returncode == 0, cli.output(sink)
        time.sleep(DOWN_S)  # results made now are spooled by the consumer
        restarted = time.time_ns()
        began = time.monotonic()
        sink = cli.start(*sink_args)
        wait_until(lambda since=restarted: stored_since(db, since) > 0, timeout=15)
        recoveries.append(time.monotonic() - began)
        time.sleep(1.0)

    for proc in producers:
        assert cli.stop(proc) == 0
    assert cli.stop(consumer) == 0, cli.output(consumer)  # waits for the last acks
    assert cli.stop(sink) == 0, cli.output(sink)

    made = printed_keys(cli.output(consumer))
    stored = stored_keys(db)
    times = ", ".join(f"{r:.2f}" for r in recoveries)
    print(f"\n{len(made)} made, {len(stored)} stored; stored again {times} s after restarts")
    assert len(made) >= 40
    assert len(set(made)) == len(made)
    assert len(stored) == len(set(stored))  # nothing stored twice
    assert set(made) == set(stored)  # nothing lost
    assert all(r < 10 for r in recoveries)
    assert "results not acknowledged" not in cli.output(consumer)
