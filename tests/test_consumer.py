"""Consumer runtime on real sockets: results, freshness, bad input, dead sink, CLI workers.

The test publishes frames itself from a plain PUB bound on a random port (t_capture = send
time), so frame age at processing start is measured end to end.
"""

from __future__ import annotations

import collections
import json
import os
import signal
import statistics
import subprocess
import sys
import threading
import time

import cv2
import numpy as np
import pytest
import zmq

from framebroker import codec, protocol
from framebroker.consumers import Consumer, ConsumerConfig
from framebroker.protocol import FrameHeader
from framebroker.testing import wait_until
from framebroker.transport import bind, make_socket

FPS = 30.0
PERIOD_MS = 1000 / FPS


class Publisher:
    """Sends JPEG test frames of each stream at ``fps`` from a PUB bound on a random port."""

    def __init__(self, ctx, streams, fps=FPS, size=(320, 240)):
        self.streams = list(streams)
        self.period = 1.0 / fps
        self.session = int.from_bytes(os.urandom(4), "big")
        self.sock = make_socket(ctx, zmq.PUB, linger_ms=0)
        self.endpoint = bind(self.sock, "tcp://127.0.0.1:0")
        self.payloads = [self._picture(i, size) for i in range(4)]
        self.seq = collections.Counter()
        self.injected: collections.deque[bytes] = collections.deque()
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    @staticmethod
    def _picture(i, size):
        width, height = size
        image = np.full((height, width, 3), 40 * i, np.uint8)
        cv2.putText(image, f"frame {i}", (10, height // 2), 0, 1.0, (255, 255, 255), 2)
        return codec.encode(image, "jpeg")

    def start(self):
        self._thread.start()
        return self

    def inject(self, data: bytes):
        """Send ``data`` as it is (bad input) from the publishing thread."""
        self.injected.append(data)

    def _run(self):
        next_tick = time.monotonic()
        while not self._stop.is_set():
            while self.injected:
                self.sock.send(self.injected.popleft())
            for stream in self.streams:
                self._send(stream)
            next_tick += self.period
            delay = next_tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_tick = time.monotonic()

    def _send(self, stream):
        seq = self.seq[stream]
        self.seq[stream] += 1
        encoded = self.payloads[seq % len(self.payloads)]
        now = time.time_ns()
        header = FrameHeader(
            stream=stream,
            session=self.session,
            seq=seq,
            t_capture=now,
            t_publish=now,
            encoding="jpeg",
            shape=encoded.shape,
            dtype=encoded.dtype,
            pixfmt=encoded.pixfmt,
        )
        self.sock.send(protocol.encode_frame(header, encoded.payload))

    def stop(self):
        self._stop.set()
        if self._thread.is_alive():
            self._thread.join(5)
        self.sock.close(linger=0)


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


@pytest.fixture
def publish(ctx):
    started = []

    def make(streams=("cam1",), fps=FPS):
        pub = Publisher(ctx, streams, fps).start()
        started.append(pub)
        return pub

    yield make
    for pub in started:
        pub.stop()


@pytest.fixture
def run_consumer():
    running = []

    def make(config, processor, **kwargs):
        consumer = Consumer(config, processor, **kwargs)
        running.append((consumer, consumer.run_in_thread().thread))
        return consumer

    yield make
    for consumer, thread in running:
        consumer.close()
        thread.join(3)
        assert not thread.is_alive(), "consumer did not stop within 3 s of close()"


@pytest.fixture
def sink(ctx):
    """A PULL bound on a random port: (endpoint, socket)."""
    sock = make_socket(ctx, zmq.PULL, linger_ms=0)
    endpoint = bind(sock, "tcp://127.0.0.1:0")
    yield endpoint, sock
    sock.close(linger=0)


def collect(sock, until, timeout=10.0):
    """Decode results from ``sock`` until ``until(results)`` holds or ``timeout`` passes."""
    results = []
    deadline = time.monotonic() + timeout
    while not until(results) and time.monotonic() < deadline:
        if sock.poll(100):
            results.append(protocol.decode_result(sock.recv()))
    return results


def config(pub, results=None, **kwargs):
    kwargs.setdefault("acked_results", None)  # results PUSHed to ``results`` (at-most-once)
    return ConsumerConfig(name="t1", publish=pub.endpoint, results=results, **kwargs)


def stats_like(frame):
    return {"shape": list(frame.image.shape), "seq": frame.seq}


def test_results_reach_the_sink_with_the_frame_fields(publish, run_consumer, sink):
    endpoint, pull = sink
    pub = publish(["cam1"])
    printed = []
    consumer = run_consumer(
        config(pub, endpoint, streams=("cam1",)), stats_like, on_result=printed.append
    )
    results = collect(pull, lambda r: len(r) >= 5)
    assert len(results) >= 5
    for r in results:
        assert (r.consumer, r.stream, r.session) == ("t1", "cam1", pub.session)
        assert r.result == {"shape": [240, 320, 3], "seq": r.seq}
        assert r.t_capture <= r.t_start and r.duration_ns > 0
        assert 0 <= r.age_ns < 1_000_000_000
    assert [r.seq for r in results] == sorted({r.seq for r in results})
    wait_until(lambda: len(printed) >= 5)
    assert consumer.stats.results_sent >= 5 and consumer.stats.results_dropped == 0
    assert consumer.stats.received >= consumer.stats.processed >= 5


def test_stream_patterns_select_exact_streams_and_groups(publish, run_consumer):
    pub = publish(["cam1", "cam10", "site1/a", "site1/b", "other"])
    seen = collections.Counter()

    def count(frame):
        seen[frame.stream] += 1

    run_consumer(config(pub, streams=("cam1", "site1/*")), count)
    wait_until(lambda: all(seen[s] >= 5 for s in ("cam1", "site1/a", "site1/b")))
    assert set(seen) == {"cam1", "site1/a", "site1/b"}


@pytest.mark.slow
@pytest.mark.parametrize("n_streams", [1, 4])
def test_slow_processor_always_gets_a_fresh_frame(publish, run_consumer, n_streams):
    streams = [f"cam{i}" for i in range(n_streams)]
    pub = publish(streams)
    per_stream = collections.Counter()

    def slow(frame):
        assert frame.image.size  # decode, as a real processor would
        per_stream[frame.stream] += 1
        time.sleep(0.1)

    consumer = run_consumer(config(pub, streams=("*",)), slow)
    time.sleep(6.0)
    consumer.close()
    ages = consumer.stats.recent_ages_ms()
    stats = consumer.stats
    print(
        f"\n{n_streams} stream(s): {len(ages)} frames processed, age median "
        f"{statistics.median(ages):.1f} ms, max {max(ages):.1f} ms, skipped {stats.skipped}"
    )
    assert len(ages) >= 40  # ~10 per second
    assert max(ages) <= PERIOD_MS + 60
    assert statistics.median(ages) <= PERIOD_MS
    assert set(per_stream) == set(streams)
    assert max(per_stream.values()) - min(per_stream.values()) <= 2  # round robin
    assert stats.skipped > stats.processed  # most frames were superseded, not queued


def test_dead_sink_does_not_stall_processing_and_drops_are_counted(publish, run_consumer, sink):
    pub = publish(["cam1"])
    dead = "tcp://127.0.0.1:1"  # nobody listens there
    consumer = run_consumer(config(pub, dead, result_buffer=5), stats_like)
    wait_until(lambda: consumer.stats.results_dropped >= 20)
    stats = consumer.stats
    assert stats.results_sent <= 5 + 1
    assert stats.processed >= 25
    wait_until(lambda: stats.processed >= 45)  # still going


def test_malformed_messages_are_counted_and_dropped(publish, run_consumer):
    pub = publish(["cam1"])
    consumer = run_consumer(config(pub), stats_like)
    wait_until(lambda: consumer.stats.processed >= 3)
    good = protocol.encode_frame(
        FrameHeader("cam1", pub.session, 0, 1, 1, "jpeg", (240, 320, 3)), b"x"
    )
    bad = [
        b"cam1\x00garbage",  # right topic, no valid header
        b"no terminator at all",
        b"cam1\x00\x09" + b"\x00" * 8,  # unknown major version
        good.replace(b"cam1", b"cam2", 1),  # topic and header disagree
        b"$streams\x00system topics are not frames",  # ignored, not counted
    ]
    for data in bad:
        pub.inject(data)
    wait_until(lambda: consumer.stats.malformed == 4)
    processed = consumer.stats.processed
    wait_until(lambda: consumer.stats.processed >= processed + 5)
    assert consumer.stats.malformed == 4


def test_processor_errors_are_counted_and_the_loop_continues(publish, run_consumer, sink):
    endpoint, pull = sink
    pub = publish(["cam1"])

    def flaky(frame):
        if frame.seq % 3 == 0:
            raise ValueError("bad luck")
        if frame.seq % 3 == 1:
            return None  # nothing to report: nothing is sent
        return {"seq": frame.seq}

    consumer = run_consumer(config(pub, endpoint), flaky)
    results = collect(pull, lambda r: len(r) >= 5)
    assert len(results) >= 5
    assert all(r.seq % 3 == 2 for r in results)
    assert consumer.stats.processor_errors >= 3
    assert consumer.stats.processed >= 10


def test_results_that_are_not_plain_maps_count_as_processor_errors(publish, run_consumer):
    pub = publish(["cam1"])
    outputs = [["not", "a", "map"], {"obj": object()}]
    calls = []

    def odd(frame):
        calls.append(frame.seq)
        return outputs[len(calls) % 2]

    consumer = run_consumer(config(pub, "tcp://127.0.0.1:1"), odd)
    wait_until(lambda: consumer.stats.processor_errors >= 4)
    assert consumer.stats.results_sent == 0


def test_close_before_run_and_run_after_close_return_at_once(publish):
    pub = publish(["cam1"])
    consumer = Consumer(config(pub), stats_like)
    consumer.start()
    consumer.close()
    consumer.run()  # returns immediately: it was closed
    assert consumer.stats.processed == 0


def test_duration_stops_the_consumer(publish):
    pub = publish(["cam1"])
    consumer = Consumer(config(pub, duration=0.5), stats_like)
    thread = consumer.run_in_thread().thread
    thread.join(5)
    assert not thread.is_alive()
    assert consumer.stats.processed > 0


def cli(*args):
    return [sys.executable, "-m", "framebroker", "--log-level", "WARNING", "consume", *args]


@pytest.fixture
def processes():
    started = []

    def spawn(cmd, **kwargs):
        proc = subprocess.Popen(cmd, **kwargs)
        started.append(proc)
        return proc

    yield spawn
    for proc in started:
        if proc.poll() is None:
            proc.kill()
        proc.wait(10)


@pytest.mark.slow
def test_cli_workers_each_process_frames_and_stop_on_sigterm(publish, sink, processes):
    endpoint, pull = sink
    pub = publish(["cam1", "cam2"])
    cmd = cli("stats", "--streams", "cam1,cam2", "--workers", "2", "--name", "w")
    # A plain PULL socket stands in for the sink: results PUSHed (v1.0), no acknowledgements.
    proc = processes(
        [*cmd, "--publish", pub.endpoint, "--results", endpoint, "--acked-results", "none"]
    )
    want = {(name, stream) for name in ("w-0", "w-1") for stream in ("cam1", "cam2")}
    results = collect(pull, lambda r: want <= {(x.consumer, x.stream) for x in r}, timeout=30)
    assert want == {(r.consumer, r.stream) for r in results}  # every worker gets every frame
    assert {"brightness", "sharpness", "width", "height", "bytes"} <= set(results[0].result)
    proc.send_signal(signal.SIGTERM)
    assert proc.wait(15) == 0


def test_cli_prints_json_lines_without_a_sink(publish, processes):
    pub = publish(["cam1"])
    cmd = cli("stats", "--streams", "cam1", "--no-send-results", "--print", "--duration", "1.5")
    proc = processes([*cmd, "--publish", pub.endpoint], stdout=subprocess.PIPE, text=True)
    out, _ = proc.communicate(timeout=30)
    assert proc.returncode == 0
    lines = [json.loads(line) for line in out.splitlines()]
    assert lines and all(line["stream"] == "cam1" for line in lines)
    assert lines[0]["result"]["width"] == 320


def test_cli_rejects_unknown_processor(processes):
    proc = processes(cli("nosuch", "--duration", "1"), stderr=subprocess.PIPE, text=True)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert "unknown processor 'nosuch'" in err
