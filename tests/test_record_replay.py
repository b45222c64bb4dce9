"""Record and replay as users run them: ``framebroker record`` and ``framebroker produce
replay:...`` as processes, a real broker, sink and consumer, real files; a kill -9 mid
recording; a full disk (a small tmpfs, mounted as root)."""

from __future__ import annotations

import itertools
import logging
import os
import re
import shutil
import subprocess
import threading
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

from framebroker import Publisher
from framebroker.consumers import Frame
from framebroker.protocol import FrameHeader, decode_frame, encode_frame
from framebroker.record import RecordConfig, Recorder
from framebroker.recording import Recording, open_stream, parse_time, stream_folder
from framebroker.segment import OPEN_SUFFIX, SegmentWriter, build_index, read_index, recover
from framebroker.testing import local_cluster, make_message, synthetic_image
from tests.conftest import CliProcesses, require, wait_until

RECORD_S = float(os.environ.get("FRAMEBROKER_RECORD_TEST_S", "30"))
FPS = 15.0
STREAMS = [f"rr/cam{i}" for i in range(4)]


def fingerprint(frame: Frame) -> dict[str, Any]:
    """A deterministic processor: the same pixels give the same result, live or replayed."""
    image = frame.image
    return {
        "orig_seq": frame.meta.get("orig_seq", frame.seq),
        "mean": round(float(image.mean()), 6),
        "hash": int(np.bitwise_xor.reduce(image.reshape(-1)[::97].astype(np.uint64))),
    }


def publish(stream: str, ingest: str, seconds: float, fps: float, stop: threading.Event) -> int:
    """Send a moving picture (plus a little noise, so JPEGs differ) at ``fps``; frames sent."""
    rng = np.random.default_rng(abs(hash(stream)) % 1000)
    sent = 0
    with Publisher(stream, ingest=ingest) as pub:
        start = time.monotonic()
        while not stop.is_set() and time.monotonic() - start < seconds:
            image = synthetic_image(160, 120, sent)
            image[:8, :8] = rng.integers(0, 255, (8, 8, 3), dtype=np.uint8)
            pub.send(image)
            sent += 1
            stop.wait(max(0.0, start + sent / fps - time.monotonic()))
    return sent


def run_threads(targets: list[Any]) -> list[Any]:
    results: list[Any] = [None] * len(targets)

    def runner(i: int) -> None:
        results[i] = targets[i]()

    threads = [threading.Thread(target=runner, args=(i,)) for i in range(len(targets))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(RECORD_S * 3 + 30)
    return results


def last_seqs(rec: Path) -> dict[str, int]:
    if not rec.exists():
        return {}
    out = {}
    for folder in Recording(rec).stream_folders():
        stream = open_stream(folder)
        frames = list(stream.frames())
        out[stream.stream] = frames[-1].message.header.seq
    return out


class Arrivals:
    """Every replayed frame on the publish port (plain SUB, nothing conflated)."""

    def __init__(self, endpoint: str, prefix: bytes = b"rr/") -> None:
        self.frames: list[tuple[str, int, int, int]] = []  # stream, t_capture, orig seq/t
        self.headers: list[FrameHeader] = []
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._sock = self._ctx.socket(zmq.SUB)
        self._sock.setsockopt(zmq.RCVHWM, 100000)
        self._sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self._sock.connect(endpoint)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run)
        self._thread.start()

    def _run(self) -> None:
        while not self._stop.is_set():
            if not self._sock.poll(50):
                continue
            h = decode_frame(self._sock.recv()).header
            self.headers.append(h)
            if "orig_seq" in h.meta:
                self.frames.append(
                    (h.stream, h.t_capture, h.meta["orig_seq"], h.meta["orig_t_capture"])
                )

    def close(self) -> None:
        self._stop.set()
        self._thread.join(5)
        self._sock.close(linger=0)
        self._ctx.term()


@pytest.mark.slow
@pytest.mark.timeout(RECORD_S * 4 + 90)
def test_a_replay_gives_the_live_results_with_the_original_timing(
    tmp_path: Path, cli: CliProcesses
) -> None:
    rec = tmp_path / "rec"
    with local_cluster(tmp_path) as cluster:
        recorder = cli.start(
            "record", "--dir", str(rec), "--streams", "rr/",
            "--publish", cluster.publish_endpoint, "--fsync-interval", "0.2",
        )  # fmt: skip
        with cluster.consumer(fingerprint, name="live", streams=("rr/",)):
            time.sleep(1.5)  # the recorder's process starts and subscribes
            stop = threading.Event()
            sent = run_threads(
                [lambda s=s: publish(s, cluster.ingest, RECORD_S, FPS, stop) for s in STREAMS]
            )
            last = {s: n - 1 for s, n in zip(STREAMS, sent, strict=True)}
            wait_until(lambda: last_seqs(rec) == last, 20, "the recorder to write the last frames")
        assert cli.stop(recorder) == 0
        log = cli.output(recorder)
        summary = re.search(r"recorded (\d+) frames .* (\d+) missed upstream .* (\d+) dropped", log)
        assert summary is not None, log
        assert not list(rec.rglob("*" + OPEN_SUFFIX))
        gaps = 0
        for stream in STREAMS:
            seqs = [f.message.header.seq for f in Recording(rec).stream(stream).frames()]
            gaps += seqs[-1] - seqs[0] + 1 - len(seqs)
            assert len(seqs) >= FPS * (RECORD_S - 2)
        # the recorder kept up (nothing dropped on its side) and counted exactly the frames
        # that never reached it (a PUB with CONFLATE drops one when two leave at once)
        assert int(summary[3]) == 0
        assert int(summary[2]) == gaps <= len(STREAMS) * FPS * RECORD_S * 0.02, log
        live = {(r.stream, r.seq): r.result for r in cluster.stored(consumer="live")}

        arrivals = Arrivals(cluster.publish_endpoint)
        time.sleep(0.5)  # the subscription reaches the broker
        try:
            with cluster.consumer(fingerprint, name="replay", streams=("rr/",)):
                replays = [  # as processes: what users run, each with its own clock and GIL
                    cli.start("produce", f"replay:{rec}/{s}", "--ingest", cluster.ingest)
                    for s in STREAMS
                ]
                for proc in replays:
                    assert proc.wait(RECORD_S + 30) == 0, cli.output(proc)
                time.sleep(1.0)
        finally:
            arrivals.close()
        replayed = {
            (r.stream, r.result["orig_seq"]): r.result for r in cluster.stored(consumer="replay")
        }

    same = set(live) & set(replayed)
    assert len(same) >= len(STREAMS) * FPS * RECORD_S / 2, (len(same), len(live), len(replayed))
    assert all(live[key] == replayed[key] for key in same)

    errors = []
    for stream in STREAMS:
        got = sorted((o, t, ot) for s, t, o, ot in arrivals.frames if s == stream)
        assert len(got) >= FPS * (RECORD_S - 2)
        for (o1, t1, ot1), (o2, t2, ot2) in itertools.pairwise(got):
            if o2 == o1 + 1:
                errors.append(abs((t2 - t1) - (ot2 - ot1)) / 1e6)
    p95 = float(np.percentile(errors, 95))
    assert p95 < 5.0, f"replay interval error p95 {p95:.2f} ms"


@pytest.mark.slow
def test_kill_9_leaves_every_closed_segment_readable(tmp_path: Path, cli: CliProcesses) -> None:
    rec = tmp_path / "rec"
    fps, fsync_s = 30.0, 0.2
    with local_cluster(tmp_path) as cluster:
        recorder = cli.start(
            "record", "--dir", str(rec), "--streams", "k9",
            "--publish", cluster.publish_endpoint,
            "--segment-seconds", "1", "--fsync-interval", str(fsync_s),
        )  # fmt: skip
        time.sleep(1.5)
        stop = threading.Event()
        counter: list[int] = []
        thread = threading.Thread(
            target=lambda: counter.append(publish("k9", cluster.ingest, 60, fps, stop))
        )
        thread.start()
        try:
            wait_until(lambda: len(list(rec.rglob("*.fbseg"))) >= 3, 20, "three closed segments")
            recorder.kill()  # SIGKILL: no cleanup at all
            recorder.wait(5)
        finally:
            stop.set()
            thread.join(5)
    closed = sorted(rec.rglob("*.fbseg"))
    for segment in closed:  # complete, and their indexes match them
        assert read_index(segment) == build_index(segment)
    (opened,) = rec.rglob("*" + OPEN_SUFFIX)
    assert recover(opened) is not None
    seqs = [f.message.header.seq for f in open_stream(rec).frames()]
    assert seqs == list(range(seqs[0], seqs[-1] + 1))
    # frames after the last fsync may be lost (a crash of the machine); a killed process
    # loses at most what it had not yet written. Publishing went on until after the kill.
    sent_before_kill = counter[0]
    assert seqs[-1] >= sent_before_kill - 1 - fps * (fsync_s + 1.0)


def _mount_tmpfs(path: Path, size: str) -> bool:
    path.mkdir()
    if os.geteuid() != 0 or not shutil.which("mount"):
        return False
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size}", "tmpfs", str(path)],
                          capture_output=True)  # fmt: skip
    return done.returncode == 0


@pytest.mark.slow
def test_a_full_disk_stops_writing_keeps_running_and_resumes(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    disk = tmp_path / "disk"
    require(_mount_tmpfs(disk, "4m"), "root and mount(8) to mount a tmpfs")
    caplog.set_level(logging.INFO, "framebroker.record")
    try:
        filler = disk / "filler"
        filler.write_bytes(b"\0" * (3 << 20))  # leave about 1 MB free
        with local_cluster(tmp_path) as cluster:
            config = RecordConfig(dir=str(disk / "rec"), streams=("full",),
                                  publish=cluster.publish_endpoint, fsync_interval=0.1)  # fmt: skip
            with Recorder(config).run_in_thread() as recorder:
                time.sleep(0.5)
                stop = threading.Event()
                thread = threading.Thread(
                    target=publish, args=("full", cluster.ingest, 60, 30.0, stop)
                )
                thread.start()
                try:
                    wait_until(lambda: recorder.stats().dropped > 5, 30, "frames dropped")
                    assert "cannot write" in caplog.text
                    written = recorder.stats().written
                    time.sleep(0.5)
                    assert recorder.thread is not None and recorder.thread.is_alive()
                    filler.unlink()  # space comes back
                    wait_until(lambda: recorder.stats().written > written + 10, 30, "writes again")
                    assert "writing again" in caplog.text
                finally:
                    stop.set()
                    thread.join(5)
            stats = recorder.stats()
            assert stats.dropped > 5 and stats.written > 10
            seqs = [f.message.header.seq for f in open_stream(disk / "rec").frames()]
            assert len(seqs) == stats.written  # everything counted as written is readable
    finally:
        subprocess.run(["umount", str(disk)], check=False)


def test_publisher_replay_keeps_the_original_seq_and_time_in_meta(tmp_path: Path) -> None:
    period = 20_000_000  # 50 fps, 20 frames: 0.4 s at speed 1
    t0 = time.time_ns() - 10**9
    folder = stream_folder(tmp_path / "rec", "lib")
    writer = SegmentWriter(folder, t0, fsync_interval=1.0)
    for seq in range(20):
        m = make_message("lib", seq, encoding="jpeg", t_capture=t0 + seq * period, meta={"k": "v"})
        writer.append(encode_frame(m.header, m.payload), m.header)
    writer.close()
    with local_cluster(tmp_path) as cluster:
        arrivals = Arrivals(cluster.publish_endpoint, b"again")
        time.sleep(0.5)
        try:
            with Publisher("again", ingest=cluster.ingest) as pub:
                started = time.monotonic()
                assert pub.replay(folder, speed=2.0, start=parse_time("0.1")) == 15
                # the link wait (0.2 s), then 14 gaps of 10 ms at twice the recorded speed
                assert 0.3 < time.monotonic() - started < 0.6
                stop = threading.Event()
                looping = threading.Thread(
                    target=pub.replay, args=(folder,), kwargs={"loop": True, "stop": stop}
                )
                looping.start()
                wait_until(lambda: len(arrivals.frames) >= 15 + 42, 10, "a second loop")
                stop.set()
                looping.join(5)
                assert not looping.is_alive()
        finally:
            arrivals.close()
    first = arrivals.headers[:15]
    assert [h.meta["orig_seq"] for h in first] == list(range(5, 20))
    assert [h.meta["orig_t_capture"] for h in first] == [t0 + s * period for s in range(5, 20)]
    assert all(h.meta["k"] == "v" and h.stream == "again" for h in first)
    # a new seq for every frame sent (the looping replay's last ones may be in flight)
    assert [h.seq for h in arrivals.headers[:45]] == list(range(45))
    loops = [h.meta["orig_seq"] for h in arrivals.headers[15:]]
    assert loops[:40] == list(range(20)) * 2
