"""Same-host shared memory (issue 17): layout, seqlock, lifecycle, and the consumer paths.

Every test points FRAMEBROKER_SHM_DIR at a directory of its own under /dev/shm (the same
tmpfs, so host ids and mappings behave as in production) and fails if a segment is left
in it at the end.
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import tempfile
import textwrap
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import zmq

import framebroker
from framebroker import shm
from framebroker.consumers import Consumer, ConsumerConfig
from framebroker.consumers.resolver import FrameResolver
from framebroker.consumers.stats import ConsumerStats
from framebroker.errors import ProtocolError, ShmError
from framebroker.producers import Producer, ProducerConfig
from framebroker.protocol import FrameHeader, topic_for
from framebroker.shm_protocol import (
    SegmentHeader,
    ShmDescriptor,
    ShmLocation,
    decode_descriptor,
    encode_descriptor,
    encode_network_notice,
    segment_name,
)
from framebroker.testing import local_cluster, wait_until
from framebroker.transport import connect, make_socket
from tests.conftest import CliProcesses, free_port, require


@pytest.fixture
def shm_dir(monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    require(Path("/dev/shm").is_dir() and os.access("/dev/shm", os.W_OK), "a writable /dev/shm")
    folder = Path(tempfile.mkdtemp(dir="/dev/shm", prefix="fbtest-"))
    monkeypatch.setenv("FRAMEBROKER_SHM_DIR", str(folder))
    try:
        yield folder
        left = sorted(p.name for p in folder.iterdir())
        assert left == [], f"segments left behind: {left}"
    finally:
        for path in folder.iterdir():
            path.unlink()
        folder.rmdir()


def uniform(value: int, shape: tuple[int, ...] = (48, 64, 3)) -> np.ndarray:
    return np.full(shape, value % 256, dtype=np.uint8)


def raw_header(seq: int, shape: tuple[int, ...] = (48, 64, 3), session: int = 7) -> FrameHeader:
    now = time.time_ns()
    return FrameHeader("cam1", session, seq, now, now, "raw", shape)


# --- layout and descriptors (pure) ------------------------------------------------------


def test_segment_header_round_trip_and_bad_headers() -> None:
    header = SegmentHeader(4, 8192, 8128, 99, 1234, 5678, 4026531836, "site/cam1")
    buffer = bytearray(header.size)
    header.pack_into(buffer)
    assert SegmentHeader.unpack_from(buffer) == header
    assert header.slot_offset(2) == 4096 + 2 * 8192
    with pytest.raises(ProtocolError, match="magic"):
        SegmentHeader.unpack_from(bytearray(4096))
    with pytest.raises(ProtocolError, match="shorter"):
        SegmentHeader.unpack_from(buffer[:100])


def test_descriptor_and_notice_round_trip() -> None:
    header = raw_header(3)
    location = ShmLocation("host", segment_name("cam1", 7, 0), 3, 8, 9216)
    decoded = decode_descriptor(encode_descriptor(header, location))
    assert isinstance(decoded, ShmDescriptor)
    assert decoded.location == location and decoded.header.seq == 3
    assert decoded.header.shape == (48, 64, 3)
    notice = decode_descriptor(encode_network_notice("site/cam2"))
    assert notice == framebroker.shm_protocol.NetworkNotice("site/cam2")


@pytest.mark.parametrize(
    ("location", "why"),
    [
        (ShmLocation("h", "../etc/passwd", 0, 2, 1), "segment"),
        (ShmLocation("h", segment_name("cam1", 7, 0), 0, 3, 1), "even"),
    ],
)
def test_malformed_descriptors_are_protocol_errors(location: ShmLocation, why: str) -> None:
    with pytest.raises(ProtocolError, match=why):
        decode_descriptor(encode_descriptor(raw_header(0), location))
    good = encode_descriptor(raw_header(0), ShmLocation("h", segment_name("cam1", 7, 0), 0, 2, 1))
    for bad in (good[:-3], good.replace(b"$shm/cam1", b"$shm/cam2"), b"$shm/", b"$shm/x\x00\x02"):
        with pytest.raises(ProtocolError):
            decode_descriptor(bad)


# --- the seqlock: overwritten slots are never handed out --------------------------------


def test_a_reader_sees_the_newest_and_notices_overwrites(shm_dir: Path) -> None:
    writer = shm.SegmentWriter("cam1", 7, slots=3)
    first = writer.write(uniform(1).data, 0, 1)
    reader = shm.SegmentReader.open(first.segment)
    payload = reader.read(first, 0)
    assert payload is not None and bytes(payload[:3]) == b"\x01\x01\x01"
    assert reader.read(first, 1) is None  # not that frame
    for seq in (1, 2):
        writer.write(uniform(seq + 1).data, seq, 1)
    assert reader.intact(first)  # 3 slots: still there
    writer.write(uniform(9).data, 3, 1)  # wraps onto slot 0
    assert not reader.intact(first)
    assert reader.read(first, 0) is None
    del payload
    reader.close()
    writer.close()


def test_a_frame_overwritten_during_processing_gives_no_result(shm_dir: Path) -> None:
    """The processor runs on a view of the slot; the writer laps the ring meanwhile: the
    result is dropped and counted as torn, never sent."""
    writer = shm.SegmentWriter("cam1", 7, slots=2)
    stats = ConsumerStats()
    resolver = FrameResolver(lambda t: None, lambda t: None, stats)
    results: list[Any] = []

    def lapping_processor(frame: Any) -> dict[str, int]:
        mean = int(frame.image.mean())
        for seq in (1, 2):  # the writer never waits for this reader
            writer.write(uniform(50).data, seq, 1)
        return {"mean": mean}

    consumer = Consumer(
        ConsumerConfig(streams=("cam1",), results=None), lapping_processor, on_result=results.append
    )
    consumer.stats = stats
    location = writer.write(uniform(10).data, 0, 1)
    frame = resolver.resolve(memoryview(encode_descriptor(raw_header(0), location)), 0)
    assert frame is not None and frame.intact
    consumer.process(frame)
    assert results == [] and stats.torn == 1 and stats.processed == 0
    # a frame that stays intact gives its result
    location = writer.write(uniform(20).data, 3, 1)
    frame = resolver.resolve(memoryview(encode_descriptor(raw_header(3), location)), 0)
    assert frame is not None
    Consumer(
        ConsumerConfig(results=None), lambda f: {"m": int(f.image.mean())}, on_result=results.append
    ).process(frame)
    assert [r.result for r in results] == [{"m": 20}]
    del frame
    resolver.close()
    writer.close()


WRITER = textwrap.dedent(
    """
    import sys, numpy as np
    from framebroker import shm
    w = shm.SegmentWriter("cam1", 7, slots=2)
    frames = [np.full(1 << 20, v, np.uint8) for v in range(256)]
    w.write(frames[0].data, 0, 1)
    print(w.name, flush=True)
    seq = 1
    while sys.stdin.readline():  # one line: write a burst of 200 frames
        for _ in range(200):
            w.write(frames[seq % 256].data, seq, 1)
            seq += 1
        print(seq, flush=True)
    w.close()
    """
)


def test_concurrent_reads_accept_only_whole_frames(shm_dir: Path) -> None:
    """A writer process laps a 2-slot ring of 1 MB frames (each one byte value) while this
    process copies slots: every copy whose counter was unchanged before and after is
    uniform. Torn copies are detected, whatever their number."""
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        env={**os.environ},
    )
    try:
        assert proc.stdout is not None and proc.stdin is not None
        name = proc.stdout.readline().strip()
        reader = shm.SegmentReader.open(name)
        accepted = torn = 0
        for _ in range(20):
            proc.stdin.write("go\n")
            proc.stdin.flush()
            for _ in range(100):
                newest = int(reader._words[shm.NEWEST_OFFSET // 8])
                slot = (newest - 1) % 2
                offset = reader.header.slot_offset(slot)
                count = int(reader._words[offset // 8])
                seq = framebroker.shm_protocol.unpack_slot(reader._view, offset)[1]
                location = ShmLocation(shm.host_id(), name, slot, count, 1 << 20)
                payload = reader.read(location, seq) if count % 2 == 0 else None
                copy = None if payload is None else np.frombuffer(payload, np.uint8).copy()
                if copy is None or not reader.intact(location):
                    torn += 1
                    continue
                accepted += 1
                assert (copy == copy[0]).all(), "a torn frame was accepted"
                assert copy[0] == seq % 256
            proc.stdout.readline()
        assert accepted > 0
        print(f"accepted {accepted}, torn {torn}")
        reader.close()
        proc.stdin.close()
        assert proc.wait(10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        for pipe in (proc.stdin, proc.stdout):
            if pipe is not None and not pipe.closed:
                pipe.close()


# --- lifecycle --------------------------------------------------------------------------


def test_a_resolution_change_makes_a_new_generation(shm_dir: Path) -> None:
    writer = shm.SegmentWriter("cam1", 7)
    small = writer.write(uniform(1).data, 0, 1)
    big = writer.write(uniform(2, (96, 128, 3)).data, 1, 1)
    assert big.segment != small.segment and big.segment.endswith(".1")
    assert sorted(p.name for p in shm_dir.iterdir()) == [big.segment]  # the old one unlinked
    smaller = writer.write(uniform(3, (24, 32, 3)).data, 2, 1)
    assert smaller.segment == big.segment  # fits: same generation
    writer.close()


def test_no_room_is_a_clear_error_not_a_crash(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A real 1 MB tmpfs (as Docker's small /dev/shm): the ring does not fit, and the
    writer says so at once (posix_fallocate), rather than dying of SIGBUS later."""
    small = tmp_path / "small-shm"
    small.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(small)], check=False
    )
    require(mounted.returncode == 0, "root, to mount a small tmpfs")
    try:
        monkeypatch.setenv("FRAMEBROKER_SHM_DIR", str(small))
        writer = shm.SegmentWriter("cam1", 7)
        with pytest.raises(ShmError, match="shm_size"):
            writer.write(uniform(1, (480, 640, 3)).data, 0, 1)
        assert list(small.iterdir()) == []
    finally:
        subprocess.run(["umount", str(small)], check=True)


def run_writer_session(session: int, how: str) -> int:
    """One writer session in a child process (forked: a real process with its own pid),
    which ends by closing its writer or by SIGKILL; its wait status."""
    pid = os.fork()
    if pid == 0:  # the child: never returns into pytest
        code = 1
        try:
            writer = shm.SegmentWriter("cam1", session)
            writer.write(np.zeros(4096, np.uint8).data, 0, 1)
            if how == "kill":
                os.kill(os.getpid(), signal.SIGKILL)
            writer.close()
            code = 0
        finally:
            os._exit(code)
    return os.waitpid(pid, 0)[1]


def test_100_writer_restarts_leave_no_segment(shm_dir: Path) -> None:
    """Writers that exit cleanly unlink their segment; one killed with kill -9 leaves it,
    and the next writer reaps it. After 100 sessions (every other one killed, the last
    one too), one reaping leaves the directory empty."""
    for session in range(1, 101):
        how = "kill" if session % 2 == 0 else "exit"
        status = run_writer_session(session, how)
        if how == "kill":
            assert os.WIFSIGNALED(status) and os.WTERMSIG(status) == signal.SIGKILL
        else:
            assert os.WIFEXITED(status) and os.WEXITSTATUS(status) == 0
        left = [p.name for p in shm_dir.iterdir()]
        assert left == ([segment_name("cam1", session, 0)] if how == "kill" else []), session
    assert shm.reap() == [segment_name("cam1", 100, 0)]


def test_a_reader_notices_its_writer_was_killed(shm_dir: Path) -> None:
    proc = subprocess.Popen(
        [sys.executable, "-c", WRITER], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
    )
    assert proc.stdout is not None
    name = proc.stdout.readline().strip()
    reader = shm.SegmentReader.open(name)
    assert reader.writer_alive()
    proc.kill()
    proc.wait()
    assert proc.stdin is not None
    proc.stdin.close()
    proc.stdout.close()
    assert not reader.writer_alive()
    reader.close()
    assert shm.reap() == [name]


# --- through the broker: local and remote consumers of one stream ----------------------


def producer(cluster: Any, **fields: Any) -> Producer:
    config = ProducerConfig(
        source="test:160x120@30", stream="cam1", ingest=cluster.ingest, encoding="raw", **fields
    )
    return Producer(config)


def test_local_and_network_consumers_of_one_stream_get_the_same_pixels(
    shm_dir: Path, tmp_path: Path
) -> None:
    with (
        local_cluster(tmp_path) as cluster,
        producer(cluster).run_in_thread(),
        framebroker.subscribe(
            "cam1", publish=cluster.publish_endpoint, send_results=False
        ) as local,
        framebroker.subscribe(
            "cam1", publish=cluster.publish_endpoint, send_results=False, shm=False
        ) as remote,
    ):
        seen: dict[str, dict[int, bytes]] = {"local": {}, "remote": {}}
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            for key, sub in (("local", local), ("remote", remote)):
                frame = sub.latest(0.05)
                if frame is not None and frame.intact:
                    seen[key][frame.seq] = frame.image.tobytes()
            common = set(seen["local"]) & set(seen["remote"])
            if len(seen["local"]) >= 20 and len(common) >= 5:
                break
        common = set(seen["local"]) & set(seen["remote"])
        assert len(common) >= 5, (len(seen["local"]), len(seen["remote"]))
        for seq in common:
            assert seen["local"][seq] == seen["remote"][seq]
        assert local.stats.shm_frames > 0
        assert remote.stats.shm_frames == 0 and remote.stats.received > 0
        assert [p.name.startswith("fb.cam1.") for p in shm_dir.iterdir()] == [True]
    # the producer unlinked its segment on close (the fixture checks)


def test_a_jpeg_stream_reaches_a_shared_memory_consumer_over_the_network(
    shm_dir: Path, tmp_path: Path
) -> None:
    with (
        local_cluster(tmp_path) as cluster,
        _jpeg(cluster),
        framebroker.subscribe("*", publish=cluster.publish_endpoint, send_results=False) as sub,
    ):
        frame = sub.latest(15)
        assert frame is not None and frame.header.encoding == "jpeg" and frame.lease is None
        assert list(shm_dir.iterdir()) == []


def _jpeg(cluster: Any) -> Producer:
    config = ProducerConfig(source="test:160x120@30", stream="cam1", ingest=cluster.ingest)
    return Producer(config).run_in_thread()


def test_descriptor_only_stream_and_a_resolution_change(shm_dir: Path, tmp_path: Path) -> None:
    """A writer that sends only descriptors (``--shm only``); frames change size midway."""
    ctx: zmq.Context[Any] = zmq.Context()
    pub = make_socket(ctx, zmq.PUB, linger_ms=0)
    writer = shm.SegmentWriter("cam1", 7)
    try:
        with (
            local_cluster(tmp_path) as cluster,
            framebroker.subscribe(
                "cam1", publish=cluster.publish_endpoint, send_results=False
            ) as sub,
        ):
            connect(pub, cluster.ingest)
            shapes: set[tuple[int, ...]] = set()

            def send(seq: int, shape: tuple[int, ...]) -> None:
                location = writer.write(uniform(seq, shape).data, seq, time.time_ns())
                header = raw_header(seq, shape)
                pub.send(encode_descriptor(header, location))

            def got(shape: tuple[int, ...]) -> bool:
                send(got.seq, shape)  # type: ignore[attr-defined]
                got.seq += 1  # type: ignore[attr-defined]
                frame = sub.latest(0.05)
                if frame is not None:
                    assert (frame.image == frame.seq % 256).all()
                    shapes.add(frame.image.shape)
                return shape in shapes

            got.seq = 0  # type: ignore[attr-defined]
            wait_until(lambda: got((48, 64, 3)), 15, "a small frame")
            wait_until(lambda: got((96, 128, 3)), 15, "a big frame")
            assert sub.stats.shm_frames > 0
    finally:
        writer.close()
        pub.close()
        ctx.term()


def test_produce_killed_then_restarted_reaps_its_old_segment(
    shm_dir: Path, cli: CliProcesses
) -> None:
    """The real ``framebroker produce``: kill -9 leaves its segment; the next one reaps it."""
    port = free_port()
    env = {"FRAMEBROKER_SHM_DIR": str(shm_dir)}
    args = ("produce", "test:64x48@30", "--encoding", "raw", "--ingest", f"tcp://127.0.0.1:{port}")
    first = cli.start(*args, env=env)
    (old,) = wait_until(lambda: list(shm_dir.iterdir()), 30, "a first segment")
    first.send_signal(signal.SIGKILL)
    first.wait(10)
    assert old.exists()
    second = cli.start(*args, env=env)
    wait_until(lambda: not old.exists() and list(shm_dir.iterdir()), 30, "the old segment reaped")
    assert cli.stop(second) == 0
    assert list(shm_dir.iterdir()) == []


def test_a_foreign_host_descriptor_switches_the_stream_to_the_network(shm_dir: Path) -> None:
    subscribed: list[bytes] = []
    resolver = FrameResolver(subscribed.append, lambda t: None, ConsumerStats())
    location = ShmLocation("another-host:1", segment_name("cam1", 7, 0), 0, 2, 9216)
    message = memoryview(encode_descriptor(raw_header(0), location))
    assert resolver.resolve(message, 0) is None
    assert resolver.resolve(message, 0) is None
    assert subscribed == [topic_for("cam1")]  # once
