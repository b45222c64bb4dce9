"""The one lifecycle (framebroker/service.py) of the five services, on real sockets, and
the one declaration of their options: an empty command line builds ``Config()``.

Each service is checked the same way: what it binds is really bound (the port is taken)
and free again after ``close()``; what it connects to really gets a TCP connection (to a
plain listening socket standing in for the peer) that ends after ``close()``.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from framebroker.broker import Broker, BrokerConfig
from framebroker.broker.cli import BROKER, broker_config
from framebroker.consumers import Consumer, ConsumerConfig
from framebroker.consumers.cli import CONSUME, build_config
from framebroker.producers import Producer, ProducerConfig
from framebroker.producers.cli import PRODUCE, config_from_args
from framebroker.service import Service
from framebroker.sink import Sink, SinkConfig
from framebroker.sink.cli import SINK, sink_config
from framebroker.viewer import Viewer, ViewerConfig
from framebroker.viewer.cli import VIEW, viewer_config
from tests.conftest import free_port, wait_until

SERVICES = ["broker", "sink", "producer", "consumer", "viewer"]
LOOPBACK = "tcp://127.0.0.1:0"


def port_taken(port: int) -> bool:
    with socket.socket() as s:
        try:
            s.bind(("127.0.0.1", port))
        except OSError:
            return True
        return False


class Peer:
    """A plain TCP listener standing in for the broker a client service connects to."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(10)
        self.endpoint = f"tcp://127.0.0.1:{self.listener.getsockname()[1]}"
        self.conn: socket.socket | None = None

    def connected(self) -> bool:
        if self.conn is None:
            self.conn, _ = self.listener.accept()  # times out (fails) after 10 s
            self.conn.settimeout(0.2)
        return True

    def disconnected(self) -> bool:
        """True once the service closed its end (read until EOF)."""
        assert self.conn is not None
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            try:
                if self.conn.recv(65536) == b"":
                    return True
            except TimeoutError:
                continue
            except ConnectionResetError:
                return True
        return False

    def close(self) -> None:
        if self.conn is not None:
            self.conn.close()
        self.listener.close()


@dataclass
class Case:
    """A service and how to see that it holds its socket (and that it let it go)."""

    service: Service
    holds: Callable[[], bool]
    released: Callable[[], bool]


def bound(service: Service, endpoint: Callable[[], str]) -> Case:
    def port() -> int:
        return int(endpoint().rstrip("/").rsplit(":", 1)[1])

    ports: list[int] = []

    def holds() -> bool:
        ports.append(port())
        return port_taken(ports[-1])

    return Case(service, holds, lambda: not port_taken(ports[-1]))


def connected(service: Service, peer: Peer) -> Case:
    return Case(service, peer.connected, peer.disconnected)


def make(kind: str, tmp_path: Path, peer: Peer) -> Case:
    if kind == "broker":
        broker = Broker(BrokerConfig(ingest=LOOPBACK, publish=LOOPBACK, control=LOOPBACK))
        return bound(broker, lambda: broker.control_endpoint)
    if kind == "sink":
        sink = Sink(SinkConfig(results=LOOPBACK, db=str(tmp_path / "results.sqlite")))
        return bound(sink, lambda: sink.results_endpoint)
    if kind == "producer":
        config = ProducerConfig(source="test:64x48@10", stream="t", ingest=peer.endpoint)
        return connected(Producer(config), peer)
    if kind == "consumer":
        config = ConsumerConfig(publish=peer.endpoint, results=None)
        return connected(Consumer(config, lambda frame: None), peer)
    dead = f"tcp://127.0.0.1:{free_port()}"  # nobody answers the viewer's stream list
    viewer = Viewer(ViewerConfig(publish=peer.endpoint, control=dead, host="127.0.0.1", port=0))
    return bound(viewer, lambda: viewer.http_endpoint)


@pytest.fixture(params=SERVICES)
def case(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Case]:
    peer = Peer()
    made = make(request.param, tmp_path, peer)
    try:
        yield made
    finally:
        made.service.close()
        peer.close()


def running(service: Service) -> bool:
    return service.phase == "running"


def test_start_twice_holds_one_socket_and_close_twice_releases_it(case: Case) -> None:
    service = case.service
    service.start()
    assert service.phase == "started" and case.holds()
    service.start()  # does nothing
    assert service.phase == "started" and case.holds()
    service.close()
    assert service.phase == "closed" and case.released()
    service.close()
    service.start()  # a closed service stays closed
    service.run()  # returns at once
    assert service.phase == "closed"


def test_run_returns_after_stop_from_another_thread(case: Case) -> None:
    service = case.service
    thread = threading.Thread(target=service.run, daemon=True)  # run() starts it
    thread.start()
    wait_until(lambda: running(service), what="run() to be running")
    assert case.holds()
    service.stop()  # from this thread, not run()'s
    thread.join(10)
    assert not thread.is_alive() and service.phase == "closed"
    assert case.released()  # run() released what it held when it returned


def test_stop_before_start_makes_run_return_at_once(case: Case) -> None:
    service = case.service
    service.stop()
    thread = threading.Thread(target=service.run, daemon=True)
    thread.start()
    thread.join(10)
    assert not thread.is_alive() and service.phase == "closed"


def test_with_starts_and_closes(case: Case) -> None:
    with case.service as service:
        assert service is case.service
        assert service.phase == "started" and case.holds()
    assert service.phase == "closed" and case.released()


def test_run_in_thread_runs_until_close(case: Case) -> None:
    service = case.service
    assert service.run_in_thread() is service
    assert service.thread is not None and service.thread.is_alive()
    wait_until(lambda: running(service), what="run() to be running")
    assert service.run_in_thread() is service  # a second call starts no second thread
    assert case.holds()
    service.close()
    assert not service.thread.is_alive() and service.phase == "closed"
    assert case.released() and service.error is None


def test_with_run_in_thread(case: Case) -> None:
    with case.service.run_in_thread() as service:
        wait_until(lambda: running(service), what="run() to be running")
        assert case.holds()
    assert service.thread is not None and not service.thread.is_alive()
    assert service.phase == "closed" and case.released()


def test_stop_from_a_signal_handler_ends_run_in_the_main_thread(case: Case) -> None:
    service = case.service
    previous = signal.signal(signal.SIGUSR1, lambda *_: service.stop())
    try:
        service.start()
        assert case.holds()

        def signal_once_running() -> None:
            wait_until(lambda: running(service), what="run() to be running")
            os.kill(os.getpid(), signal.SIGUSR1)

        sender = threading.Thread(target=signal_once_running, daemon=True)
        sender.start()
        service.run()  # blocks in this (the main) thread until the handler's stop()
        sender.join(10)
    finally:
        signal.signal(signal.SIGUSR1, previous)
    assert service.phase == "closed" and case.released()


def test_a_second_run_at_once_is_refused(case: Case) -> None:
    service = case.service.run_in_thread()
    wait_until(lambda: running(service), what="run() to be running")
    with pytest.raises(Exception, match="already running"):
        service.run()


# --- options declared once: an empty command line builds Config() --------------------------


def parse(add_arguments: Callable[[argparse.ArgumentParser], None], argv: list[str]) -> Any:
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


COMMANDS = {
    "broker": (BROKER.add_arguments, [], broker_config, BrokerConfig),
    "sink": (SINK.add_arguments, [], sink_config, SinkConfig),
    "producer": (
        PRODUCE.add_arguments,
        ["test:64x48@5"],  # SOURCE is required
        config_from_args,
        lambda: ProducerConfig("test:64x48@5"),
    ),
    "consumer": (CONSUME.add_arguments, [], build_config, ConsumerConfig),
    "viewer": (VIEW.add_arguments, [], viewer_config, ViewerConfig),
}


@pytest.mark.parametrize("kind", SERVICES)
def test_an_empty_command_line_builds_the_default_config(kind, monkeypatch) -> None:
    for name in [n for n in os.environ if n.startswith("FRAMEBROKER_")]:
        monkeypatch.delenv(name)
    add_arguments, argv, build, default = COMMANDS[kind]
    assert build(parse(add_arguments, argv)) == default()


def test_consumer_results_are_acknowledged_by_default_like_the_command() -> None:
    assert ConsumerConfig().acked_results == "tcp://127.0.0.1:5559"
    config = ConsumerConfig(results="tcp://sink:7000")
    assert config.acked_results == "tcp://sink:7002"
    assert ConsumerConfig(results=None).acked_results is None
    assert ConsumerConfig(acked_results=None).acked_results is None  # PUSH, at most once


def test_producer_stream_defaults_to_the_sources_name_like_the_command() -> None:
    assert ProducerConfig("test:64x48@5").stream == "test"
    assert ProducerConfig("/videos/door.mp4").stream == "door"
