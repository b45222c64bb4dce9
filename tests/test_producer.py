"""The Producer service and ``framebroker produce``: real sockets on loopback, real OpenCV."""

from __future__ import annotations

import argparse
import logging
import os
import signal
import subprocess
import sys
import threading
import time
from typing import Any

import cv2
import numpy as np
import pytest
import zmq

from framebroker import codec
from framebroker.config import parse_size
from framebroker.errors import ConfigError, SourceError
from framebroker.producers import FrameSource, Producer, ProducerConfig
from framebroker.producers.cli import PRODUCE, config_from_args
from framebroker.protocol import FrameMessage, decode_frame, is_system_message, topic_for
from framebroker.testing import wait_until
from framebroker.transport import bind, make_socket

WAIT_S = 10.0
BASE = np.arange(6 * 8 * 3, dtype=np.uint8).reshape(6, 8, 3)


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def ctx():
    context: zmq.Context[Any] = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def sub(ctx):
    """A SUB socket bound on a random port, subscribed to everything: (socket, endpoint)."""
    sock = make_socket(ctx, zmq.SUB, linger_ms=0, heartbeat_ms=None)
    endpoint = bind(sock, "tcp://127.0.0.1:0")
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    yield sock, endpoint
    sock.close(linger=0)


@pytest.fixture
def producers_running():
    """Start producers in threads; close and join them all at teardown."""
    running: list[tuple[Producer, threading.Thread]] = []
    errors: list[BaseException] = []

    def start(config: ProducerConfig, **kwargs) -> tuple[Producer, threading.Thread]:
        producer = Producer(config, **kwargs)
        producer.start()

        def run() -> None:
            try:
                producer.run()
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=run, daemon=True)
        thread.start()
        running.append((producer, thread))
        return producer, thread

    start.errors = errors  # type: ignore[attr-defined]
    yield start
    for producer, thread in running:
        producer.close()
        thread.join(5)
        assert not thread.is_alive()


def receive(sock: zmq.Socket, count: int) -> list[FrameMessage]:
    """``count`` frames from ``sock``; each message must be single-part."""
    frames = []
    deadline = time.monotonic() + WAIT_S
    while len(frames) < count:
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"received only {len(frames)} of {count} frames"
        if sock.poll(int(min(remaining, 0.5) * 1000)):
            parts = sock.recv_multipart()
            assert len(parts) == 1, "frame messages are single-part"
            if is_system_message(parts[0]):  # shared-memory descriptors (v1.4): not frames
                continue
            frames.append(decode_frame(parts[0]))
    return frames


def config(endpoint: str, **kwargs: Any) -> ProducerConfig:
    values: dict[str, Any] = {"source": "test:160x120@50", "stream": "t1", "ingest": endpoint}
    values.update(kwargs)
    return ProducerConfig(**values)


class CountingSource(FrameSource):
    """Frame k is (BASE + k) % 256, or its first channel when ``gray``; paced at 100 fps."""

    description = "counting source"

    def __init__(self, gray: bool = False, dtype: Any = np.uint8) -> None:
        self.k = 0
        self.gray = gray
        self.dtype = dtype

    @property
    def pace_fps(self) -> float:
        return 100.0

    def open(self) -> None:
        self.k = 0

    def read(self) -> np.ndarray:
        image = ((BASE.astype(np.int64) + self.k) % 256).astype(self.dtype)
        self.k += 1
        return image[:, :, 0].copy() if self.gray else image

    def close(self) -> None:
        pass


def run_cli(*args: str, env: dict[str, str] | None = None, **kwargs: Any) -> subprocess.Popen:
    full_env = {**os.environ, **(env or {})}
    return subprocess.Popen(
        [sys.executable, "-m", "framebroker", "produce", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=full_env,
        **kwargs,
    )


# --- the Producer --------------------------------------------------------------------


def test_publishes_decodable_jpeg_frames_with_a_complete_header(sub, producers_running):
    sock, endpoint = sub
    producer, _ = producers_running(config(endpoint, meta={"site": "lobby", "floor": "2"}))
    frames = receive(sock, 5)
    seqs = [f.header.seq for f in frames]
    assert seqs == sorted(set(seqs)), "seq increases"
    for frame in frames:
        h = frame.header
        assert h.stream == "t1" and h.session == producer.session
        assert h.encoding == "jpeg" and h.pixfmt == "bgr24" and h.dtype == "uint8"
        assert h.shape == (120, 160, 3)
        assert h.meta == {"site": "lobby", "floor": "2"}
        assert 0 < h.t_capture <= h.t_publish
        assert codec.decode(h, frame.payload).shape == (120, 160, 3)
    # The counter moves right after the send returns, so it may trail the receiver a little.
    deadline = time.monotonic() + 5
    while producer.stats().published < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    stats = producer.stats()
    assert stats.published >= 5 and stats.grabbed >= stats.published
    assert stats.state == "streaming" and stats.encode_errors == 0


def test_size_resizes_before_encoding(sub, producers_running):
    sock, endpoint = sub
    producers_running(config(endpoint, size=parse_size("80x60")))
    frame = receive(sock, 1)[0]
    assert frame.header.shape == (60, 80, 3)
    assert codec.decode(frame.header, frame.payload).shape == (60, 80, 3)


def test_raw_payload_is_the_exact_image(sub, producers_running):
    sock, endpoint = sub
    producers_running(config(endpoint, encoding="raw"), source=CountingSource)
    for frame in receive(sock, 3):
        h = frame.header
        assert (h.encoding, h.shape, h.dtype, h.pixfmt) == ("raw", (6, 8, 3), "uint8", "bgr24")
        image = codec.decode(h, frame.payload)
        k = int(image[0, 0, 0])
        assert np.array_equal(image, (BASE.astype(np.int64) + k) % 256)


def test_gray_frames_keep_their_format(sub, producers_running):
    sock, endpoint = sub
    producers_running(config(endpoint, encoding="raw"), source=lambda: CountingSource(gray=True))
    frame = receive(sock, 1)[0]
    assert (frame.header.shape, frame.header.pixfmt) == ((6, 8), "gray8")


def test_a_conflating_single_stream_subscriber_gets_whole_frames(ctx, producers_running):
    sock = make_socket(ctx, zmq.SUB, linger_ms=0, conflate=True, heartbeat_ms=None)
    endpoint = bind(sock, "tcp://127.0.0.1:0")
    sock.setsockopt(zmq.SUBSCRIBE, topic_for("t1"))
    try:
        producers_running(config(endpoint))
        frames = receive(sock, 3)
        assert all(f.header.stream == "t1" for f in frames)
    finally:
        sock.close(linger=0)


def test_each_run_has_its_own_session(sub, producers_running):
    sock, endpoint = sub
    first, _ = producers_running(config(endpoint))
    second, _ = producers_running(config(endpoint, stream="t2"))
    sessions = {f.header.stream: f.header.session for f in receive(sock, 20)}
    assert sessions == {"t1": first.session, "t2": second.session}
    assert first.session != second.session
    assert 0 < first.session < 2**63


def test_fps_cap_publishes_the_newest_frame_at_most_at_the_cap(sub, producers_running):
    sock, endpoint = sub
    producer, _ = producers_running(config(endpoint, source="test:64x48@200", fps=10.0))
    frames = receive(sock, 5)
    span_s = (frames[-1].header.t_publish - frames[0].header.t_publish) / 1e9
    assert span_s >= (len(frames) - 1) / 10.0 * 0.9  # never faster than the cap
    stats = producer.stats()
    assert stats.skipped > 0 and stats.grabbed > stats.published


def test_logs_when_the_broker_link_comes_and_goes(ctx, producers_running, caplog):
    caplog.set_level(logging.INFO, logger="framebroker.producers.link")
    sock = make_socket(ctx, zmq.SUB, linger_ms=0, heartbeat_ms=None)
    endpoint = bind(sock, "tcp://127.0.0.1:0")
    try:
        producers_running(config(endpoint))
        wait_until(lambda: "connected to the broker" in caplog.text)
    finally:
        sock.close(linger=0)
    wait_until(lambda: "lost the broker" in caplog.text)


def test_encode_errors_are_counted_not_fatal(sub, producers_running):
    _, endpoint = sub
    producer, thread = producers_running(
        config(endpoint), source=lambda: CountingSource(dtype=np.float32)
    )
    wait_until(lambda: producer.stats().encode_errors >= 3)
    assert thread.is_alive() and producer.stats().published == 0


def test_the_end_of_a_video_file_stops_the_producer(tmp_path, sub, producers_running):
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), 25.0, (64, 48))
    for i in range(10):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    _, endpoint = sub
    producer, thread = producers_running(config(endpoint, source=str(path)))
    thread.join(WAIT_S)
    assert not thread.is_alive()
    stats = producer.stats()
    assert stats.state == "ended" and 1 <= stats.published <= 10 and stats.grabbed == 10
    assert producers_running.errors == []


def test_a_missing_file_makes_run_raise(tmp_path, sub):
    _, endpoint = sub
    producer = Producer(config(endpoint, source=str(tmp_path / "missing.mp4")))
    with pytest.raises(SourceError, match="no such video file"):
        producer.run()
    producer.close()


def test_close_before_run_returns_at_once(sub):
    _, endpoint = sub
    producer = Producer(config(endpoint))
    producer.start()
    producer.close()
    producer.run()  # returns immediately
    producer.close()  # and again: idempotent
    assert producer.stats().published == 0


# --- ProducerConfig ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("change", "message"),
    [
        ({"stream": "/bad"}, "invalid stream id"),
        ({"stream": "$streams"}, "invalid stream id"),
        ({"source": "test:12"}, "WIDTHxHEIGHT"),
        ({"ingest": "localhost:5555"}, "not a ZeroMQ endpoint"),
        ({"encoding": "png"}, "encoding"),
        ({"quality": 0}, "quality"),
        ({"fps": 0}, "fps"),
        ({"size": (0, 10)}, "size"),
        ({"meta": {"bad key": "x"}}, "metadata key"),
        ({"meta": {"k": 1}}, "must be a string"),
    ],
)
def test_config_rejects_bad_values(change, message):
    with pytest.raises(ConfigError, match=message):
        config("tcp://127.0.0.1:5555", **change)


def test_config_meta_is_read_only():
    c = config("tcp://127.0.0.1:5555", meta={"a": "b"})
    with pytest.raises(TypeError):
        c.meta["a"] = "c"  # type: ignore[index]


# --- the CLI -------------------------------------------------------------------------


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser()
    PRODUCE.add_arguments(parser)
    return parser.parse_args(argv)


def test_flags_become_the_config():
    args = parse(
        ["video.mp4", "--broker", "cams.lan", "--fps", "12.5", "--size", "320x240", "--loop",
         "--encoding", "raw", "--meta", "site=lobby", "--meta", "floor=2", "--duration", "3"]
    )  # fmt: skip
    c = config_from_args(args)
    assert (c.source, c.stream, c.ingest) == ("video.mp4", "video", "tcp://cams.lan:5555")
    assert (c.fps, c.size, c.loop, c.encoding, c.duration) == (12.5, (320, 240), True, "raw", 3.0)
    assert dict(c.meta) == {"site": "lobby", "floor": "2"}


def test_environment_variables_are_honoured(monkeypatch):
    monkeypatch.setenv("FRAMEBROKER_FPS", "7")
    monkeypatch.setenv("FRAMEBROKER_STREAM", "demo/cam1")
    monkeypatch.setenv("FRAMEBROKER_INGEST", "tcp://10.0.0.1:6000")
    monkeypatch.setenv("FRAMEBROKER_LOOP", "yes")
    monkeypatch.setenv("FRAMEBROKER_META", "site=lobby,floor=2")
    monkeypatch.setenv("FRAMEBROKER_SOURCE", "test:320x240@15")
    c = config_from_args(parse([]))
    assert (c.fps, c.stream, c.ingest, c.loop) == (7.0, "demo/cam1", "tcp://10.0.0.1:6000", True)
    assert c.source == "test:320x240@15"
    assert dict(c.meta) == {"site": "lobby", "floor": "2"}
    assert config_from_args(parse(["--fps", "3"])).fps == 3.0  # the flag wins


def test_cli_publishes_and_exits_0_after_duration(sub):
    sock, endpoint = sub
    proc = run_cli("test:320x240@30", "--stream", "t1", "--ingest", endpoint, "--duration", "2")
    try:
        frames = receive(sock, 3)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == 0, stderr
    assert all(f.header.stream == "t1" and f.header.shape == (240, 320, 3) for f in frames)
    assert "published" in stderr


@pytest.mark.parametrize(
    ("argv", "env", "message"),
    [
        (["test", "--size", "12"], {}, "WIDTHxHEIGHT"),
        (["test", "--quality", "101"], {}, "1..100"),
        (["test", "--stream", "/bad"], {}, "invalid stream id"),
        (["test", "--meta", "novalue"], {}, "key=value"),
        (["test"], {"FRAMEBROKER_FPS": "fast"}, "FRAMEBROKER_FPS"),
        ([], {}, "SOURCE is missing"),
    ],
)
def test_cli_bad_flags_exit_2_with_a_clear_message(argv, env, message):
    proc = run_cli(*argv, env=env)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 2, stderr
    assert message in stderr


def test_cli_missing_file_exits_1(tmp_path, sub):
    _, endpoint = sub
    proc = run_cli(str(tmp_path / "missing.mp4"), "--ingest", endpoint)
    _, stderr = proc.communicate(timeout=WAIT_S)
    assert proc.returncode == 1, stderr
    assert "no such video file" in stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, 0), (signal.SIGINT, 130)], ids=["SIGTERM", "SIGINT"]
)
def test_cli_stops_cleanly_on_signals(sub, sig, code):
    sock, endpoint = sub
    proc = run_cli("test:64x48@30", "--ingest", endpoint)
    try:
        receive(sock, 1)  # running and publishing
        proc.send_signal(sig)
        _, stderr = proc.communicate(timeout=WAIT_S)
    finally:
        proc.kill()
        proc.wait()
    assert proc.returncode == code, stderr
