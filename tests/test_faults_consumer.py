"""A worker of ``consume --workers 2`` that raises or dies is restarted; the other goes on.

Worker ``w-0`` first lets an exception escape (logged with its traceback), then, once
restarted, kills its own process with ``os._exit``; after its second restart it works.
Worker ``w-1`` is never restarted and keeps storing results all along.
"""

from __future__ import annotations

import itertools
import time
from pathlib import Path

import pytest

from tests.conftest import free_port, query_db, wait_until

CRASHING = """
import multiprocessing
import os
import pathlib
import time

MARKS = pathlib.Path({marks!r})


class Boom(BaseException):
    pass


def process(frame):
    if multiprocessing.current_process().name == "w-0":
        raised, killed = MARKS / "raised", MARKS / "killed"
        if not raised.exists():
            raised.write_text(str(time.time_ns()))
            raise Boom("worker w-0 blows up")
        if not killed.exists():
            killed.write_text(str(time.time_ns()))
            os._exit(9)
    return {{"seq": frame.seq}}
"""


def first_result_after(db: Path, consumer: str, since_ns: int) -> int | None:
    sql = "SELECT min(received_ns) FROM results WHERE consumer = ? AND received_ns > ?"
    rows = query_db(db, sql, consumer, since_ns)
    return rows[0][0] if rows else None


def gaps_s(db: Path, consumer: str) -> float:
    sql = "SELECT received_ns FROM results WHERE consumer = ? ORDER BY received_ns"
    times = [r[0] for r in query_db(db, sql, consumer)]
    return max((b - a) / 1e9 for a, b in itertools.pairwise(times))


@pytest.mark.slow
def test_dead_worker_is_restarted_with_backoff_and_the_other_goes_on(cli, tmp_path):
    ingest, publish, control, results = (free_port() for _ in range(4))
    db = tmp_path / "results.sqlite"
    marks = tmp_path / "marks"
    marks.mkdir()
    (tmp_path / "crashing.py").write_text(CRASHING.format(marks=str(marks)))
    cli.start(
        *("broker", "--ingest", f"tcp://127.0.0.1:{ingest}"),
        *("--publish", f"tcp://127.0.0.1:{publish}", "--control", f"tcp://127.0.0.1:{control}"),
    )
    sink = cli.start("sink", "--results", f"tcp://127.0.0.1:{results}", "--db", str(db))
    cli.start("produce", "test:160x120@20", "--stream", "crash/cam", "--ingest",
              f"tcp://127.0.0.1:{ingest}")  # fmt: skip
    consumer = cli.start(
        *("consume", f"{tmp_path / 'crashing.py'}:process", "--workers", "2", "--name", "w"),
        *("--publish", f"tcp://127.0.0.1:{publish}", "--results", f"tcp://127.0.0.1:{results}"),
    )
    wait_until(lambda: (marks / "killed").exists(), timeout=60)
    killed_ns = int((marks / "killed").read_text())
    wait_until(lambda: first_result_after(db, "w-0", killed_ns), timeout=30)
    raised_ns = int((marks / "raised").read_text())
    time.sleep(2.0)
    assert cli.stop(consumer) == 0, cli.output(consumer)
    assert cli.stop(sink) == 0

    log = cli.output(consumer)
    assert "worker w-0 failed" in log and "Traceback" in log and "Boom: worker w-0 blows up" in log
    assert log.count("worker w-0 died") == 2 and log.count("worker w-0 restarted") == 2
    assert "worker w-1 died" not in log
    back_ns = first_result_after(db, "w-0", killed_ns)
    assert back_ns is not None
    # restarts after 0.5 s, then 1 s of backoff; a worker process starts in ~1-2 s
    recovered = (back_ns - killed_ns) / 1e9
    print(f"\nw-0 raised, then died; results again {recovered:.2f} s after it died "
          f"({(killed_ns - raised_ns) / 1e9:.2f} s between the two crashes); "
          f"w-1 longest gap {gaps_s(db, 'w-1'):.2f} s")  # fmt: skip
    assert recovered < 15
    assert gaps_s(db, "w-1") < 3.0  # the other worker was not disturbed
