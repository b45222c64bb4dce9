"""``framebroker.subscribe``: the newest frames by iteration, on a real broker and sink.

A broker and a sink run in this process on free loopback ports; frames come from
``framebroker.Publisher`` threads, whose last sent seq is what "newest" is checked against.
"""

from __future__ import annotations

import argparse
import inspect
import json
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import framebroker
from framebroker.broker import Broker, BrokerConfig
from framebroker.consumers import cli as consume_cli
from framebroker.consumers.subscribe import subscription_config
from framebroker.sink import Sink, SinkConfig
from tests.conftest import query_db, wait_until

FPS = 30.0
LOOPBACK = "tcp://127.0.0.1:0"


class Camera:
    """Publishes a small image of one stream at ``fps`` from a thread, as a camera would."""

    def __init__(self, ingest: str, stream: str, fps: float = FPS) -> None:
        self.publisher = framebroker.Publisher(stream, ingest=ingest)
        self.period = 1.0 / fps
        self.last_seq = -1
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        image = np.zeros((48, 64, 3), np.uint8)
        while not self._stop.wait(self.period):
            image[:] = (self.last_seq + 1) % 256
            self.last_seq = self.publisher.send(image)

    def stop(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self.publisher.close()


class Services:
    """An in-process broker (and, on demand, a sink) on free loopback ports."""

    def __init__(self, tmp_path: Path) -> None:
        self.broker = Broker(BrokerConfig(ingest=LOOPBACK, publish=LOOPBACK, control=LOOPBACK))
        self.broker.run_in_thread()
        self.db = tmp_path / "results.sqlite"
        self.sink: Sink | None = None
        self._sink_thread: threading.Thread | None = None
        self.cameras: list[Camera] = []
        self.subscriptions: list[framebroker.Subscription] = []

    def start_sink(self) -> Sink:
        self.sink = Sink(SinkConfig(results=LOOPBACK, acked_results=LOOPBACK, db=str(self.db)))
        self.sink.start()
        self._sink_thread = threading.Thread(target=self.sink.run, daemon=True)
        self._sink_thread.start()
        return self.sink

    def camera(self, stream: str, fps: float = FPS) -> Camera:
        camera = Camera(self.broker.ingest_endpoint, stream, fps)
        self.cameras.append(camera)
        return camera

    def subscribe(self, streams: Any, **kwargs: Any) -> framebroker.Subscription:
        kwargs.setdefault("send_results", False)
        subscription = framebroker.subscribe(
            streams,
            publish=self.broker.publish_endpoint,
            work=self.broker.work_endpoint,
            **kwargs,
        )
        self.subscriptions.append(subscription)
        return subscription

    def close(self) -> None:
        for subscription in self.subscriptions:
            subscription.close()
        for camera in self.cameras:
            camera.stop()
        if self.sink is not None:
            self.sink.close()
            assert self._sink_thread is not None
            self._sink_thread.join(10)
        self.broker.close()


@pytest.fixture
def services(tmp_path: Path) -> Iterator[Services]:
    running = Services(tmp_path)
    try:
        yield running
    finally:
        running.close()


def test_a_slow_loop_gets_the_newest_frame_never_a_backlog(services: Services) -> None:
    camera = services.camera("slow/cam")
    frames = services.subscribe("slow/cam")
    assert frames.latest(timeout=10) is not None
    seen = []
    for _ in range(6):
        time.sleep(0.5)  # "work": 15 frames arrive meanwhile
        frame = frames.latest(timeout=5)
        assert frame is not None
        lag = camera.last_seq - frame.seq  # frames published since this one
        seen.append((frame.seq, lag, frame.age))
        assert lag <= 5, seen  # a backlog would be 15 frames behind, then 30, 45...
        assert frame.age < 0.5, seen  # younger than one pass of the loop
    seqs = [seq for seq, _, _ in seen]
    assert seqs == sorted(set(seqs))
    assert frames.stats.skipped >= 6 * 10  # the frames nobody asked for were dropped
    assert frames.stats.processed == 7


def test_several_streams_each_newest_and_never_twice(services: Services) -> None:
    for stream in ("multi/a", "multi/b", "other/c"):
        services.camera(stream)
    got: dict[str, list[tuple[int, int]]] = {}
    with framebroker.subscribe(
        "multi/", publish=services.broker.publish_endpoint, send_results=False, timeout=10
    ) as frames:
        for frame in frames:
            got.setdefault(frame.stream, []).append((frame.session, frame.seq))
            if all(len(got.get(s, [])) >= 5 for s in ("multi/a", "multi/b")):
                break
    assert set(got) == {"multi/a", "multi/b"}
    for keys in got.values():
        assert len(keys) == len(set(keys))
        assert [seq for _, seq in keys] == sorted(seq for _, seq in keys)


def test_latest_returns_none_on_timeout_and_iteration_ends(services: Services) -> None:
    services.camera("here/cam")
    frames = services.subscribe("nobody/", timeout=0.3)
    began = time.monotonic()
    assert frames.latest(timeout=0.3) is None
    assert time.monotonic() - began >= 0.3
    assert list(frames) == []


def test_close_is_idempotent_and_ends_a_waiting_loop(services: Services) -> None:
    frames = services.subscribe("nobody/")
    returned: list[object] = []
    waiter = threading.Thread(target=lambda: returned.append(frames.latest()))
    waiter.start()
    time.sleep(0.2)
    frames.close()
    waiter.join(5)
    assert returned == [None]
    frames.close()
    assert frames.closed and frames.latest(timeout=0.1) is None and list(frames) == []


def test_a_group_shares_frames_between_subscriptions(services: Services) -> None:
    services.camera("grp/cam")
    workers = [services.subscribe("grp/", group="g", name=f"w{i}") for i in range(2)]
    taken: list[list[tuple[int, int]]] = [[], []]

    def work(i: int) -> None:
        deadline = time.monotonic() + 3
        while time.monotonic() < deadline:
            frame = workers[i].latest(timeout=0.5)
            if frame is not None:
                taken[i].append((frame.session, frame.seq))
                time.sleep(0.02)  # some work, so both take turns

    threads = [threading.Thread(target=work, args=(i,)) for i in range(2)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(10)
    first, second = (set(keys) for keys in taken)
    assert first and second, taken
    assert not first & second  # no frame went to both
    assert len(first) == len(taken[0]) and len(second) == len(taken[1])


def results(db: Path, consumer: str) -> list[tuple[Any, ...]]:
    return query_db(
        db,
        "SELECT stream, session, seq, age_ns, result FROM results WHERE consumer = ? ORDER BY seq",
        consumer,
    )


def test_send_result_is_stored_and_acknowledged(services: Services) -> None:
    sink = services.start_sink()
    services.camera("res/cam")
    frames = services.subscribe(
        "res/cam",
        name="lib-acked",
        send_results=True,
        results=sink.results_endpoint,
        acked_results=sink.acked_results_endpoint,
    )
    sent = []
    for n in range(3):
        frame = frames.latest(timeout=10)
        assert frame is not None
        assert frames.send_result(frame, {"n": n, "mean": float(frame.image.mean())})
        sent.append((frame.stream, frame.session, frame.seq))
    assert frames.flush(timeout=10) == 0
    assert frames.stats.results_acked == 3 and frames.pending_results == 0
    rows = results(services.db, "lib-acked")  # acknowledged = committed
    assert [row[:3] for row in rows] == sent
    assert [json.loads(row[4])["n"] for row in rows] == [0, 1, 2]
    assert all(row[3] >= 0 for row in rows)  # age at hand-out: t_start - t_capture


def test_results_without_acknowledgement_or_none_at_all(services: Services) -> None:
    sink = services.start_sink()
    services.camera("res/cam")
    pushed = services.subscribe(
        "res/cam",
        name="lib-pushed",
        send_results=True,
        results=sink.results_endpoint,
        acked_results=None,
    )
    frame = pushed.latest(timeout=10)
    assert frame is not None
    assert pushed.send_result(frame, {"ok": True})
    assert pushed.flush() == 0 and pushed.pending_results == 0
    wait_until(lambda: results(services.db, "lib-pushed"), what="the pushed result")
    silent = services.subscribe("res/cam", send_results=False)
    frame = silent.latest(timeout=10)
    assert frame is not None
    with pytest.raises(framebroker.ConfigError, match="send_results=False"):
        silent.send_result(frame, {"ok": True})
    with pytest.raises(framebroker.ProcessorError):
        pushed.send_result(frame, {"not plain": object()})
    pushed.close()
    with pytest.raises(framebroker.TransportError, match="closed"):
        pushed.send_result(frame, {"ok": True})


def test_bad_arguments_are_config_errors() -> None:
    with pytest.raises(framebroker.ConfigError, match="stream pattern"):
        framebroker.subscribe("bad\x00name")
    with pytest.raises(framebroker.ConfigError, match="fps"):
        framebroker.subscribe("*", group="g", fps=5)
    with pytest.raises(framebroker.ConfigError, match="timeout"):
        framebroker.subscribe("*", timeout=0)


# --- the parameters are consume's flags ------------------------------------------------


def consume_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser()
    consume_cli.add_arguments(parser)
    return parser


def test_parameters_have_the_names_and_defaults_of_consume_flags() -> None:
    defaults = vars(consume_parser().parse_args([]))
    params = inspect.signature(framebroker.subscribe).parameters
    shared = set(params) & set(defaults)
    assert shared == {
        *("streams", "broker", "publish", "results", "acked_results", "send_results"),
        *("work", "group", "plain_sub", "name", "fps", "duration", "shm"),
    }
    for name in shared:
        assert params[name].default == defaults[name], name
    assert set(params) - shared == {"timeout", "security"}


@pytest.mark.parametrize(
    "flags",
    [
        [],
        ["--broker", "broker.lan", "--streams", "a,site/", "--streams", "b"],
        ["--group", "g", "--streams", "cam1", "--name", "worker-1"],
        ["--acked-results", "none"],
        ["--acked-results", "tcp://127.0.0.1:7001", "--results", "tcp://127.0.0.1:7000"],
        ["--no-send-results", "--fps", "5", "--duration", "2"],
        ["--publish", "tcp://127.0.0.1:6000", "--work", "tcp://127.0.0.1:6001"],
        ["--no-shm"],
    ],
)
def test_parameters_build_the_config_consume_builds(flags: list[str]) -> None:
    args = consume_parser().parse_args(flags)
    kwargs = {
        name: getattr(args, name)
        for name in inspect.signature(subscription_config).parameters
        if hasattr(args, name)
    }
    kwargs["security"] = None
    assert subscription_config(**kwargs) == consume_cli.build_config(args)
