"""A worker behind a slow link still gets fresh frames; a fan-out subscriber does not.

Hosts as network namespaces (tests/netns.py): ``central`` runs the broker, the sink and a
720p test-pattern camera at 30 fps (~41 kB a frame, ~10 Mbit/s); ``slow-worker`` and
``slow-subscriber`` each sit behind a cable shaped to 3 Mbit/s towards them (``tc tbf``),
less than a third of the stream. Both spend 100 ms a frame. The subscriber (fan-out, every
frame) falls further behind every second: the frames the link cannot carry queue in the
broker and the kernel. The worker of a group asks for one frame at a time, so at most one
frame is ever on its way: the frame it starts on is as old as one transfer (~110 ms) plus
up to a frame period, for the whole run.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import query_db, require, wait_until
from tests.netns import Network, framebroker, missing

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(180)]

RATE = "3mbit"
RUN_S = 12
SLOW_PROCESSOR = """
import time

def process(frame):
    time.sleep(0.1)
    return {"seq": frame.seq}
"""


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    what = missing()
    require(what is None, what or "")
    hosts = ["central", "slow-worker", "slow-subscriber"]
    with Network(tmp_path, hosts, {"broker": "central"}) as net:
        yield net


def ages_by_consumer(db: Path) -> dict[str, list[tuple[int, float]]]:
    rows = query_db(db, "SELECT consumer, t_start, age_ns FROM results ORDER BY id")
    out: dict[str, list[tuple[int, float]]] = {}
    for consumer, t_start, age_ns in rows:
        out.setdefault(consumer, []).append((t_start, age_ns / 1e6))
    return out


def quarters(ages: list[float]) -> tuple[float, float]:
    """Median age of the first and of the last quarter of the run."""
    q = max(1, len(ages) // 4)
    return statistics.median(ages[:q]), statistics.median(ages[-q:])


def test_a_worker_behind_a_slow_link_gets_fresh_frames(network: Network, tmp_path: Path):
    central = network["central"]
    db = central.workdir / "results.sqlite"
    central.start(*framebroker("broker"))
    central.start(*framebroker("sink", "--db", str(db)))
    central.start(*framebroker("produce", "test:1280x720@30", "--stream", "cam1"))
    for host in ("slow-worker", "slow-subscriber"):
        network[host].throttle(RATE)
        (network[host].workdir / "slowproc.py").write_text(SLOW_PROCESSOR)
    common = ("--broker", "broker", "--streams", "cam1")
    network["slow-worker"].start(
        *framebroker("consume", "slowproc.py:process", "--name", "worker", "--group", "g"),
        *common,
    )
    network["slow-subscriber"].start(
        *framebroker("consume", "slowproc.py:process", "--name", "subscriber", "--plain-sub"),
        *common,
    )
    wait_until(lambda: len(ages_by_consumer(db)) == 2, timeout=40)
    start = time.time_ns()
    time.sleep(RUN_S)
    ages = {
        name: [age for t_start, age in rows if t_start >= start]
        for name, rows in ages_by_consumer(db).items()
    }
    worker, subscriber = ages["worker"], ages["subscriber"]
    w_first, w_last = quarters(worker)
    s_first, s_last = quarters(subscriber)
    print(
        f"\nover {RUN_S} s at {RATE}: worker {len(worker)} frames, age median "
        f"{statistics.median(worker):.0f} ms (first quarter {w_first:.0f}, last {w_last:.0f}, "
        f"max {max(worker):.0f}); fan-out subscriber {len(subscriber)} frames, first quarter "
        f"{s_first:.0f} ms, last {s_last:.0f} ms, max {max(subscriber):.0f} ms"
    )
    # The link really is starved: the fan-out subscriber's frames age as the run goes on.
    assert s_last > s_first + 1000, "the throttled link did not starve the subscriber"
    # The worker's do not: one transfer (~110 ms at 3 Mbit/s) plus up to a frame period.
    assert len(worker) >= RUN_S, "the worker got almost no frames"
    assert statistics.median(worker) <= 400
    assert w_last <= w_first + 100, "the worker's frames grew older"
    assert max(worker) <= 1000
