"""A broker set on loopback: placement, failover after kill -9, return, workers, streams.

Each broker is a real ``framebroker broker`` process binding its own loopback address
(127.15.N.k, a fresh N per test so parallel runs never share one) with the default ports,
as docs/deployment.md tells users to run a set on one machine. Producers are library
Publishers given the set; consumers and workers subscribe to the whole set.
"""

from __future__ import annotations

import json
import os
import secrets
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

import framebroker
from framebroker import control
from framebroker.placement import owner
from tests.conftest import CliProcesses, wait_until

pytestmark = pytest.mark.timeout(180)

STREAMS = [f"cam{i}" for i in range(6)]
FPS = 20
FAILOVER_S = 3.0  # the bound: a dead broker's streams are served again within 3 s
FRESH_MS = 1000 / FPS + 150  # one frame period plus a margin for a shared 2-core machine


class BrokerSet:
    """Three broker processes on 127.15.N.1-3 with the default ports."""

    def __init__(self, cli: CliProcesses) -> None:
        self.cli = cli
        self.net = f"127.15.{secrets.randbelow(250) + 1}"
        self.hosts = [f"{self.net}.{k}" for k in (1, 2, 3)]
        self.procs: dict[str, subprocess.Popen[str]] = {}

    @property
    def spec(self) -> str:
        return ",".join(self.hosts)

    def members(self) -> list[str]:
        return [f"{h}:5555" for h in self.hosts]

    def start(self, host: str) -> None:
        ports = {"ingest": 5555, "publish": 5556, "control": 5558, "work": 5560}
        flags = [f"--{name}=tcp://{host}:{port}" for name, port in ports.items()]
        self.procs[host] = self.cli.start("broker", *flags, "--stale-after", "1")
        wait_until(lambda: self.answers(host), 20, f"broker on {host}")

    def answers(self, host: str) -> bool:
        try:
            return bool(control.request(f"tcp://{host}:5558", "ping", timeout=0.5)["ok"])
        except framebroker.TransportError:
            return False

    def kill(self, host: str) -> None:
        proc = self.procs.pop(host)
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(10)

    def live_streams(self, host: str) -> set[str]:
        reply = control.request(f"tcp://{host}:5558", "streams", timeout=2.0)
        return {s["stream"] for s in reply["streams"] if s["state"] == "live"}

    def owned(self, host: str) -> int:
        return sum(self.owner_host(s) == host for s in STREAMS)

    def owner_host(self, stream: str, live: list[str] | None = None) -> str:
        members = self.members() if live is None else [f"{h}:5555" for h in live]
        best = owner(stream, members)
        assert best is not None
        return best.rsplit(":", 1)[0]


@pytest.fixture
def brokers(cli: CliProcesses) -> Iterator[BrokerSet]:
    bset = BrokerSet(cli)
    for host in bset.hosts:
        bset.start(host)
    yield bset


class Cameras:
    """A Publisher per stream, all given the set, sending at FPS in one thread."""

    def __init__(self, spec: str, shm: str = "auto") -> None:
        self.pubs = [framebroker.Publisher(s, spec, encoding="raw", shm=shm) for s in STREAMS]
        self.image = np.zeros((48, 64), np.uint8)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.wait(1 / FPS):
            for pub in self.pubs:
                pub.send(self.image)

    def __enter__(self) -> Cameras:
        for pub in self.pubs:
            pub.start()
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()
        for pub in self.pubs:
            pub.close()


class Watcher:
    """A subscription to the whole set in a thread; records every frame it hands out."""

    def __init__(self, spec: str, *, shm: bool = True) -> None:
        self.sub = framebroker.subscribe("*", spec, send_results=False, name="watcher", shm=shm)
        self.frames: list[tuple[float, str, int, int, int]] = []  # t, stream, session, seq, age
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        for frame in self.sub:
            now = time.time_ns()
            self.frames.append(
                (time.monotonic(), frame.stream, frame.session, frame.seq, now - frame.t_capture)
            )

    def fresh_since(self, t: float, stream: str) -> float | None:
        """When ``stream`` first had a fresh frame handed out after monotonic time ``t``."""
        for when, name, _, _, age in list(self.frames):
            if when >= t and name == stream and age / 1e6 <= FRESH_MS:
                return when
        return None

    def close(self) -> None:
        self.sub.close()
        self._thread.join(10)

    def assert_never_older(self) -> None:
        last: dict[str, tuple[int, int]] = {}
        for _, stream, session, seq, _ in self.frames:
            if stream in last and last[stream][0] == session:
                assert seq > last[stream][1], f"{stream}: seq {seq} after {last[stream][1]}"
            last[stream] = (session, seq)


def feeds(host: str) -> int:
    return int(control.request(f"tcp://{host}:5558", "stats", timeout=2.0)["feeds"])


@pytest.mark.parametrize(
    ("publish_shm", "shm"),
    [("auto", True), ("off", True), ("auto", False)],
    ids=["shared-memory", "network-notices", "network"],
)
def test_streams_are_placed_fail_over_after_kill_9_and_return(
    brokers: BrokerSet, publish_shm: str, shm: bool
):
    """The default subscriber is a feed: by credit from every broker of the set. With shared
    memory on and publishers that write none, it asks for the streams the brokers' network
    notices name, so it is a feed of every broker as with shared memory off. Publishers
    writing shared memory (raw frames, the default) send descriptors to every broker: the
    subscriber reads the rings and asks no broker for frames."""
    watcher = Watcher(brokers.spec, shm=shm)
    feeding = [0, 0, 0] if publish_shm == "auto" and shm else [1, 1, 1]
    try:
        with Cameras(brokers.spec, publish_shm):
            # placement: each broker serves exactly the streams that rank it first
            for host in brokers.hosts:
                mine = {s for s in STREAMS if brokers.owner_host(s) == host}
                wait_until(lambda h=host, m=mine: brokers.live_streams(h) == m, 10, host)
            wait_until(lambda: {f[1] for f in watcher.frames} == set(STREAMS), 10)
            # one feed per broker (none when the frames come from shared memory)
            wait_until(lambda: [feeds(h) for h in brokers.hosts] == feeding, 10, "feeds")
            # kill -9 the broker serving the most streams
            victim = max(brokers.hosts, key=lambda h: brokers.owned(h))
            moved = [s for s in STREAMS if brokers.owner_host(s) == victim]
            survivors = [h for h in brokers.hosts if h != victim]
            killed_at = time.monotonic()
            brokers.kill(victim)
            for stream in moved:
                when = wait_until(lambda s=stream: watcher.fresh_since(killed_at, s), 10, stream)
                assert when - killed_at < FAILOVER_S, f"{stream} back after {when - killed_at}s"
            for host in survivors:
                mine = {s for s in STREAMS if brokers.owner_host(s, survivors) == host}
                if feeding == [1, 1, 1]:  # frames came back: so did their placement
                    assert brokers.live_streams(host) >= mine
                else:  # frames never stopped (descriptors from every broker); placement
                    wait_until(lambda h=host, m=mine: brokers.live_streams(h) >= m, 10, host)
            # the broker comes back: its streams return to it
            brokers.start(victim)
            wait_until(lambda: brokers.live_streams(victim) == set(moved), 10, "streams back")
            back_at = time.monotonic()
            wait_until(lambda: all(watcher.fresh_since(back_at, s) for s in STREAMS), 10)
    finally:
        watcher.close()
    watcher.assert_never_older()


def test_streams_command_shows_the_serving_broker_and_the_set_health(
    brokers: BrokerSet, cli: CliProcesses
):
    def streams_json() -> dict:
        out = subprocess.run(
            [sys.executable, "-m", "framebroker", "streams", "--broker", brokers.spec, "--json"],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        return json.loads(out.stdout) if out.stdout else {}

    with Cameras(brokers.spec):

        def placed() -> dict:
            """every stream listed, each by its owner (a producer that saw a broker miss
            its pings on a loaded machine moves back to it as soon as it answers)"""
            reply = streams_json()
            rows = {s["stream"]: s["broker"] for s in reply.get("streams", [])}
            owners = {stream: brokers.owner_host(stream) for stream in rows}
            return reply if len(rows) == len(STREAMS) and rows == owners else {}

        reply = wait_until(placed, 20)
        assert [b["up"] for b in reply["brokers"]] == [True, True, True]
        brokers.kill(brokers.hosts[0])
        reply = streams_json()
        assert [b["up"] for b in reply["brokers"]] == [False, True, True]
        table = subprocess.run(
            [sys.executable, "-m", "framebroker", "streams", "--broker", brokers.spec],
            capture_output=True, text=True, timeout=30,
        )  # fmt: skip
        assert "broker set: 2 of 3 up" in table.stdout and "DOWN" in table.stdout


def test_a_work_group_across_the_set_hands_each_frame_to_one_worker(brokers: BrokerSet):
    taken: list[tuple[str, str, int, int]] = []
    lock = threading.Lock()
    stop = threading.Event()

    def work(name: str) -> None:
        with framebroker.subscribe(
            "*", brokers.spec, group="g", name=name, send_results=False
        ) as frames:
            while not stop.is_set():
                frame = frames.latest(timeout=0.2)
                if frame is not None:
                    with lock:
                        taken.append((name, frame.stream, frame.session, frame.seq))
                    time.sleep(0.02)

    workers = [threading.Thread(target=work, args=(f"w{i}",)) for i in range(2)]
    with Cameras(brokers.spec):
        for t in workers:
            t.start()
        try:
            wait_until(lambda: {t[1] for t in taken} == set(STREAMS), 20, "every stream")
            wait_until(lambda: len(taken) >= 200, 30, "200 frames")
        finally:
            stop.set()
            for t in workers:
                t.join(10)
    keys = [(s, session, seq) for _, s, session, seq in taken]
    assert len(keys) == len(set(keys)), "a frame went to two workers"
    assert {name for name, *_ in taken} == {"w0", "w1"}
