"""Freshness, the product's promise, measured end to end through the real CLI.

A consumer spending 100 ms per frame on 30 fps streams must always start on a frame at most
about one frame period old (plus a margin for a shared, noisy machine) — at the start of the
run and at its end alike. imagezmq/NetGear hand such a consumer frames seconds old, growing.
The test asserts on frame age (t_start - t_capture, stored by the sink), a property of the
pipeline, not on how fast anything runs.
"""

from __future__ import annotations

import statistics
import time

import pytest

from tests.conftest import free_port, query_db, wait_until

FRAME_PERIOD_MS = 1000 / 30
MARGIN_MS = 60  # scheduling noise on a shared 2-core machine; queueing would be 1000s of ms
# A single frame may meet a descheduled process on a loaded machine (seen: 142 ms with four
# test suites running at once); a queue would make *every* frame seconds old and growing.
OUTLIER_MS = 300
RUN_S = 10

SLOW_PROCESSOR = """
import time

def process(frame):
    time.sleep(0.1)  # 100 ms of "work" per frame
    return {"seq": frame.seq}
"""


def run_pipeline(cli, tmp_path, streams: int) -> dict[str, list[float]]:
    ingest, publish, control, results = (free_port() for _ in range(4))
    db = tmp_path / "results.sqlite"
    (tmp_path / "slowproc.py").write_text(SLOW_PROCESSOR)
    cli.start(
        "broker",
        "--ingest",
        f"tcp://127.0.0.1:{ingest}",
        "--publish",
        f"tcp://127.0.0.1:{publish}",
        "--control",
        f"tcp://127.0.0.1:{control}",
    )
    sink = cli.start("sink", "--results", f"tcp://127.0.0.1:{results}", "--db", str(db))
    for i in range(streams):
        cli.start(
            "produce",
            "test:320x240@30",
            "--stream",
            f"fresh/cam{i}",
            "--ingest",
            f"tcp://127.0.0.1:{ingest}",
        )
    consumer = cli.start(
        "consume",
        f"{tmp_path / 'slowproc.py'}:process",
        "--streams",
        "fresh/",
        "--name",
        "slow",
        "--publish",
        f"tcp://127.0.0.1:{publish}",
        "--results",
        f"tcp://127.0.0.1:{results}",
    )

    def first_result():
        found = query_db(db, "SELECT count(DISTINCT stream) FROM results")
        return bool(found) and found[0][0] == streams

    wait_until(first_result, timeout=30)
    time.sleep(RUN_S)
    assert cli.stop(consumer) == 0, cli.output(consumer)
    assert cli.stop(sink) == 0, cli.output(sink)
    rows = query_db(db, "SELECT stream, age_ns FROM results ORDER BY id")
    ages: dict[str, list[float]] = {}
    for stream, age_ns in rows:
        ages.setdefault(stream, []).append(age_ns / 1e6)
    return ages


@pytest.mark.slow
@pytest.mark.parametrize("streams", [1, 4])
def test_slow_consumer_always_starts_on_a_fresh_frame(cli, tmp_path, streams):
    ages = run_pipeline(cli, tmp_path, streams)
    assert sorted(ages) == [f"fresh/cam{i}" for i in range(streams)]
    every = [age for per_stream in ages.values() for age in per_stream]
    # ~10 frames/s processed in all for RUN_S seconds, shared fairly among the streams.
    assert len(every) >= 5 * RUN_S
    for stream, values in ages.items():
        assert len(values) >= len(every) / streams / 2, f"{stream} was starved"
    worst = max(every)
    median = statistics.median(every)
    p95 = statistics.quantiles(every, n=20)[-1]
    print(
        f"\n{streams} stream(s): {len(every)} frames, age median {median:.1f} ms, "
        f"p95 {p95:.1f} ms, max {worst:.1f} ms"
    )
    assert median <= FRAME_PERIOD_MS, f"median age {median:.0f} ms"
    assert p95 <= FRAME_PERIOD_MS + MARGIN_MS, f"p95 age {p95:.0f} ms"
    assert worst <= OUTLIER_MS, f"a frame {worst:.0f} ms old was processed"
    # Flat over time: the last quarter is no older than the first (no queue builds up).
    quarter = max(1, len(every) // 4)
    assert statistics.median(every[-quarter:]) <= FRAME_PERIOD_MS
