"""Helpers of the hostile-input tests: a broker and a sink on loopback, good and bad peers."""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from framebroker.broker import Broker, BrokerConfig
from framebroker.protocol import FrameHeader, ResultMessage, decode_frame, encode_frame
from framebroker.sink import Sink, SinkConfig

LOOPBACK = "tcp://127.0.0.1:0"
SHAPE = (4, 6, 3)  # raw bgr24: 72 bytes of payload
PAYLOAD = bytes(72)


def header(stream: str = "cam1", seq: int = 0, session: int = 7) -> FrameHeader:
    now = time.time_ns()
    return FrameHeader(stream, session, seq, now, now, "raw", SHAPE, "uint8", "bgr24")


def frame(stream: str = "cam1", seq: int = 0, session: int = 7) -> bytes:
    """A valid frame message of ``stream``."""
    return encode_frame(header(stream, seq, session), PAYLOAD)


def result(seq: int, consumer: str = "good", delivery: int | None = None) -> ResultMessage:
    t0 = 1_700_000_000_000_000_000
    return ResultMessage(consumer, "cam1", 7, seq, t0, t0 + 1000, 50, {"seq": seq}, id=delivery)


@contextlib.contextmanager
def running_broker(**fields: Any) -> Iterator[Broker]:
    """A broker on random loopback ports, run in a thread (``with``: closed at the end)."""
    config = {"ingest": LOOPBACK, "publish": LOOPBACK, "control": LOOPBACK, "log_stats": 0.0}
    with Broker(BrokerConfig(**(config | fields))).run_in_thread() as broker:
        yield broker


class RunningSink:
    """A sink on random loopback ports with its receive loop in a thread."""

    def __init__(self, db: Path, **fields: Any) -> None:
        self.sink = Sink(SinkConfig(results=LOOPBACK, db=str(db), **fields))
        self.sink.start()
        self.errors: list[BaseException] = []
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        try:
            self.sink.run()
        except BaseException as exc:  # a crash: the test reports it
            self.errors.append(exc)
            raise

    def close(self) -> None:
        self.sink.close()
        self.thread.join(timeout=10)


class Peers:
    """Client sockets of one context, all closed with linger 0 at the end."""

    def __init__(self) -> None:
        self.ctx: zmq.Context[Any] = zmq.Context()
        self._sockets: list[zmq.Socket[Any]] = []

    def socket(self, kind: int, endpoint: str, **options: int) -> zmq.Socket[Any]:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        for name, value in options.items():
            sock.setsockopt(getattr(zmq, name.upper()), value)
        sock.connect(endpoint)
        self._sockets.append(sock)
        return sock

    def sub(self, endpoint: str, prefix: bytes = b"") -> zmq.Socket[Any]:
        sock = self.socket(zmq.SUB, endpoint, rcvhwm=0)
        sock.setsockopt(zmq.SUBSCRIBE, prefix)
        return sock

    def close(self) -> None:
        for sock in self._sockets:
            sock.close(linger=0)
        self.ctx.term()

    def __enter__(self) -> Peers:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def publish_until_seen(broker: Broker, pub: zmq.Socket[Any], stream: str, seq: int = 0) -> int:
    """Send frames seq, seq + 1, ... until the broker knows the stream; the last seq sent.

    A fresh PUB drops frames until the broker's subscription reaches it (slow joiner).
    """
    while True:
        pub.send(frame(stream, seq))
        deadline = time.monotonic() + 0.05
        while time.monotonic() < deadline:
            if any(s.stream == stream and s.seq == seq for s in broker.streams()):
                return seq
            time.sleep(0.002)
        seq += 1


def drain(sub: zmq.Socket[Any], quiet_ms: int = 200) -> list[bytes]:
    """Every message until ``quiet_ms`` pass without one."""
    out = []
    while sub.poll(quiet_ms):
        out.append(sub.recv())
    return out


def seqs_of(messages: list[bytes], stream: str) -> list[int]:
    """The seq of each message of ``stream`` (every message must decode)."""
    decoded = [decode_frame(m).header for m in messages]
    return [h.seq for h in decoded if h.stream == stream]
