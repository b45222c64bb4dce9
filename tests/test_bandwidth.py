"""When the broker-to-consumer path is the bottleneck on one host (issue 14).

- Eight default consumers of one raw 1080p30 stream (6.2 MB a frame) on the camera's host
  each start on frames younger than two frame periods at p99. By default (what a user
  gets) the producer writes raw frames to shared memory and the consumers read them there
  by descriptor; the network path (``--no-shm``: feeds over loopback TCP, ~1.5 GB/s to
  carry to all eight) is measured and reported too, and held to a looser bound, since on
  a 2-core machine copying 8 x 6.2 MB per frame period is CPU the test cannot conjure.
- A plain SUB subscriber that stops reading cannot make the broker hold more than its
  per-subscriber byte cap: the broker's RSS stays under it, the overflow is counted, and
  a reading subscriber of the same stream still gets fresh frames.

Everything runs through the real CLI on free loopback ports; processes stop by PID.
"""

from __future__ import annotations

import statistics
import time
from pathlib import Path

import pytest
import zmq

from framebroker import control
from tests.conftest import free_port, query_db, wait_until

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PERIOD_MS = 1000 / 30
RAW_1080P = 1920 * 1080 * 3
# The network path's bound: not the two frame periods (the shared-memory path is
# the default that meets it), but no queue: seconds-old frames (plain SUB) fail it.
NETWORK_BOUND_MS = 300
NOOP_PROCESSOR = """
def process(frame):
    return {"seq": frame.seq}
"""


class Host:
    """A broker (and a sink when asked) on free loopback ports."""

    def __init__(self, cli, tmp_path: Path, *broker_args: str) -> None:
        self.cli = cli
        self.db = tmp_path / "results.sqlite"
        self.processor = tmp_path / "noop.py"
        self.processor.write_text(NOOP_PROCESSOR)
        ports = [free_port() for _ in range(5)]
        self.ingest, self.publish, self.control, self.work, self.results = (
            f"tcp://127.0.0.1:{p}" for p in ports
        )
        self.broker = cli.start(
            "broker",
            *("--ingest", self.ingest, "--publish", self.publish),
            *("--control", self.control, "--work", self.work),
            *broker_args,
        )

    def stats(self) -> dict:
        reply = control.request(self.control, "stats")
        assert reply["ok"], reply
        return reply

    def rss_mb(self) -> float:
        status = Path(f"/proc/{self.broker.pid}/status").read_text()
        return int(status.split("VmRSS:")[1].split()[0]) / 1024


def p99(values: list[float]) -> float:
    return statistics.quantiles(values, n=100)[-1]


@pytest.mark.parametrize("shm", ["--shm", "--no-shm"], ids=["shared-memory", "network"])
def test_eight_same_host_consumers_of_raw_1080p_start_on_fresh_frames(cli, tmp_path, shm):
    host = Host(cli, tmp_path)
    cli.start("sink", "--results", host.results, "--db", str(host.db))
    cli.start(
        "produce", "test:1920x1080@30", "--encoding", "raw", "--stream", "raw1",
        "--ingest", host.ingest,
    )  # fmt: skip
    names = [f"c{i}" for i in range(8)]
    for name in names:
        cli.start(
            "consume", f"{host.processor}:process", "--name", name, "--streams", "raw1",
            *("--publish", host.publish, "--work", host.work, "--results", host.results),
            shm,
        )  # fmt: skip

    def consumers_seen() -> int:
        return len(query_db(host.db, "SELECT DISTINCT consumer FROM results"))

    wait_until(lambda: consumers_seen() == 8, timeout=60)
    start = time.time_ns()
    time.sleep(10)
    rows = query_db(
        host.db, "SELECT consumer, age_ns FROM results WHERE t_start >= ? ORDER BY id", start
    )
    stats = host.stats()
    ages: dict[str, list[float]] = {}
    for consumer, age_ns in rows:
        ages.setdefault(consumer, []).append(age_ns / 1e6)
    report = ", ".join(
        f"{n} {len(a)} frames p50 {statistics.median(a):.0f} p99 {p99(a):.0f} ms"
        for n, a in sorted(ages.items())
    )
    path = "shared memory" if shm == "--shm" else "network"
    print(f"\n8 consumers of raw 1080p30 ({path}) over 10 s: {report}; feeds {stats['feeds']}")
    # shared memory: the feeds ask for nothing (every stream is local); network: 8 feeds
    assert stats["feeds"] == (0 if shm == "--shm" else 8)
    bound = 2 * PERIOD_MS if shm == "--shm" else NETWORK_BOUND_MS
    for name in names:
        assert len(ages[name]) >= 30, f"{name} got almost no frames"
        assert p99(ages[name]) < bound, f"{name}: p99 age {p99(ages[name]):.0f} ms"


def test_a_plain_subscriber_that_stops_reading_stays_under_the_byte_cap(cli, tmp_path):
    cap_mb, message_mb = 32, 8  # a frame bound of 4: at most 32 MB for the stuck one
    host = Host(
        cli, tmp_path, "--publish-queue-bytes", f"{cap_mb}M", "--max-message-size", f"{message_mb}M"
    )
    cli.start(
        "produce", "test:1920x1080@30", "--encoding", "raw", "--stream", "raw1",
        "--ingest", host.ingest,
    )  # fmt: skip
    wait_until(lambda: host.stats()["frames_in"] >= 10, timeout=30)
    baseline = host.rss_mb()
    ctx = zmq.Context()
    try:
        stuck = ctx.socket(zmq.SUB)  # subscribes, then never reads
        stuck.setsockopt(zmq.LINGER, 0)
        stuck.setsockopt(zmq.RCVHWM, 1)
        stuck.setsockopt(zmq.RCVBUF, 64 * 1024)
        stuck.setsockopt(zmq.SUBSCRIBE, b"raw1\0")
        stuck.connect(host.publish)
        reader = ctx.socket(zmq.SUB)
        reader.setsockopt(zmq.LINGER, 0)
        reader.setsockopt(zmq.SUBSCRIBE, b"raw1\0")
        reader.connect(host.publish)
        got, peak, ends = 0, 0.0, time.monotonic() + 12  # ~360 frames: 2.2 GB unbounded
        next_rss = 0.0
        while (now := time.monotonic()) < ends:
            if reader.poll(50):  # frames come every 33 ms: read them as they come
                reader.recv(copy=False)
                got += 1
            if now >= next_rss:  # and look at the broker's memory every 0.2 s meanwhile
                peak, next_rss = max(peak, host.rss_mb()), now + 0.2
        peak = max(peak, host.rss_mb())
        stats = host.stats()
    finally:
        ctx.destroy(linger=0)
    growth = peak - baseline
    print(
        f"\nstuck plain subscriber, byte cap {cap_mb} MB: broker RSS {baseline:.0f} -> peak "
        f"{peak:.0f} MB (+{growth:.0f}), publish_hwm {stats['publish_hwm']}, overflows "
        f"{stats['publish_overflows']}; the reading subscriber got {got} frames"
    )
    assert stats["publish_hwm"] == cap_mb // message_mb
    assert stats["publish_overflows"] >= 1, "the stuck subscriber's overflow was not counted"
    # the cap, plus what the kernel socket buffers of the two peers take, plus slack
    assert growth < cap_mb + 48, f"broker RSS grew {growth:.0f} MB over a {cap_mb} MB cap"
    assert got >= 200, "the reading subscriber was held back by the stuck one"
