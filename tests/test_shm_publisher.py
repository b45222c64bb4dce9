"""``framebroker.Publisher`` writes shared memory (issue 17): a publisher process on this
host feeds same-host subscribers from its ring, remote ones by the network; its segment
goes with ``close()``, with its garbage collection, and after ``kill -9`` with the reaper;
its heartbeat keeps an idle publisher alive to a reaper in another pid namespace.

Every test points FRAMEBROKER_SHM_DIR at a directory of its own (``shm_dir``, from
tests/test_shm.py) and fails if a segment is left in it.
"""

from __future__ import annotations

import gc
import os
import shutil
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest

import framebroker
from framebroker import shm
from framebroker.errors import ShmError
from framebroker.protocol import encode_frame
from framebroker.recording import stream_folder
from framebroker.segment import SegmentWriter as RecordingWriter
from framebroker.shm_protocol import segment_name
from framebroker.testing import local_cluster, make_message, wait_until
from tests.conftest import CliProcesses, require, stop_process
from tests.test_shm import shm_dir, uniform

__all__ = ["shm_dir"]  # the fixture, used by name

STREAM = "lab/cam"

# A publisher of raw frames, each one byte value (seq % 256), every 20 ms until its stdin
# closes; "idle": one frame, then nothing (the heartbeat alone keeps it alive).
PUBLISHER = textwrap.dedent(
    """
    import select, sys
    import numpy as np
    import framebroker
    ingest, shm, how = sys.argv[1:4]
    with framebroker.Publisher(
        "lab/cam", ingest=ingest, encoding="raw", shm=shm
    ) as pub:
        print(pub.session, flush=True)
        seq = 0
        while not select.select([sys.stdin], [], [], 0.02)[0]:
            if how == "stream" or seq == 0:
                pub.send(np.full((48, 64, 3), seq % 256, np.uint8))
                seq += 1
        print("sent", pub.sent, flush=True)
    """
)


@pytest.fixture
def publisher_process() -> Iterator[Any]:
    """Starts publisher processes (``start(ingest, shm, how)``); stops each one by PID."""
    procs: list[subprocess.Popen[str]] = []

    def start(ingest: str, mode: str = "auto", how: str = "stream") -> subprocess.Popen[str]:
        proc = subprocess.Popen(
            [sys.executable, "-c", PUBLISHER, ingest, mode, how],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        procs.append(proc)
        return proc

    try:
        yield start
    finally:
        for proc in procs:
            stop_process(proc, 10)
            for pipe in (proc.stdin, proc.stdout):
                if pipe is not None and not pipe.closed:
                    pipe.close()


def session_of(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    return int(proc.stdout.readline())


def close_publisher(proc: subprocess.Popen[str]) -> str:
    """Close the publisher's stdin: it leaves its loop and closes; what it printed last."""
    assert proc.stdin is not None and proc.stdout is not None
    proc.stdin.close()
    assert proc.wait(15) == 0
    return proc.stdout.read()


def segments(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_a_publisher_process_feeds_same_host_subscribers_from_shared_memory(
    shm_dir: Path, tmp_path: Path, publisher_process: Any
) -> None:
    """A same-host subscriber reads the publisher's ring (frames leased from a segment,
    counted as shm frames); one with ``shm=False`` gets the frame messages; the pixels are
    the same. Closing the publisher unlinks its segment."""
    with (
        local_cluster(tmp_path) as cluster,
        framebroker.subscribe(
            STREAM, publish=cluster.publish_endpoint, send_results=False
        ) as local,
        framebroker.subscribe(
            STREAM, publish=cluster.publish_endpoint, send_results=False, shm=False
        ) as remote,
    ):
        proc = publisher_process(cluster.ingest)
        session = session_of(proc)
        seen: dict[str, dict[int, bytes]] = {"local": {}, "remote": {}}
        leased = 0

        def both_got_frames() -> bool:
            nonlocal leased
            for key, sub in (("local", local), ("remote", remote)):
                frame = sub.latest(0.05)
                if frame is None or not frame.intact:
                    continue
                assert frame.session == session and frame.stream == STREAM
                assert (frame.image == frame.seq % 256).all()
                seen[key][frame.seq] = frame.image.tobytes()
                leased += key == "local" and frame.lease is not None
            return len(seen["local"]) >= 10 and len(seen["remote"]) >= 10 and leased >= 5

        wait_until(both_got_frames, 30, "frames at both subscribers")
        assert local.stats.shm_frames > 0
        assert remote.stats.shm_frames == 0 and remote.stats.received > 0
        for seq in set(seen["local"]) & set(seen["remote"]):
            assert seen["local"][seq] == seen["remote"][seq]
        assert segments(shm_dir) == [segment_name(STREAM, session, 0)]
        assert close_publisher(proc).startswith("sent ")
        assert segments(shm_dir) == []


def test_a_killed_publisher_leaves_its_segment_until_a_reader_reaps_it(
    shm_dir: Path, tmp_path: Path, publisher_process: Any
) -> None:
    """kill -9: no ``close()``, the segment stays; the same-host subscriber notices its
    writer is gone and reaps it (the producer's cleanup, unchanged)."""
    with (
        local_cluster(tmp_path) as cluster,
        framebroker.subscribe(STREAM, publish=cluster.publish_endpoint, send_results=False) as sub,
    ):
        proc = publisher_process(cluster.ingest)
        name = segment_name(STREAM, session_of(proc), 0)

        def leased_frame() -> bool:
            frame = sub.latest(0.05)
            return frame is not None and frame.lease is not None

        wait_until(leased_frame, 30, "a frame from shared memory")
        proc.send_signal(signal.SIGKILL)
        proc.wait(10)
        assert segments(shm_dir) == [name]  # nobody unlinked it
        wait_until(lambda: segments(shm_dir) == [], 15, "the reader to reap the segment")


def test_an_idle_publisher_stays_alive_to_a_reaper_in_another_pid_namespace(
    shm_dir: Path, tmp_path: Path, publisher_process: Any
) -> None:
    """A reaper in another pid namespace (a container sharing /dev/shm) cannot see the
    writer's pid: it goes by the heartbeat. A publisher that sent one frame and then
    nothing for longer than STALE_S keeps its segment (the heartbeat thread); the same
    process stopped (SIGSTOP: no heartbeat) loses it. Both reaps run in a new pid namespace."""
    require(os.geteuid() == 0 and shutil.which("unshare") is not None, "root and unshare")

    def reap_elsewhere() -> list[str]:
        code = "from framebroker import shm; print(*shm.reap(), sep='\\n')"
        out = subprocess.run(
            ["unshare", "--pid", "--fork", sys.executable, "-c", code],
            capture_output=True,
            text=True,
            timeout=30,
            check=True,
        )
        return out.stdout.split()

    with local_cluster(tmp_path) as cluster:
        proc = publisher_process(cluster.ingest, "on", "idle")
        name = segment_name(STREAM, session_of(proc), 0)
        wait_until(lambda: segments(shm_dir) == [name], 15, "the segment")
        time.sleep(shm.STALE_S + 1)  # idle: one frame, long ago
        assert reap_elsewhere() == []
        assert segments(shm_dir) == [name]
        # the control: the same writer without its heartbeat is dead to that reaper
        proc.send_signal(signal.SIGSTOP)
        try:
            time.sleep(shm.STALE_S + 1)
            assert reap_elsewhere() == [name]
        finally:
            proc.send_signal(signal.SIGCONT)
        assert segments(shm_dir) == []
        close_publisher(proc)  # unlinking a segment already gone is fine


def test_off_writes_no_segment_and_frames_still_arrive(shm_dir: Path, tmp_path: Path) -> None:
    with (
        local_cluster(tmp_path) as cluster,
        framebroker.Publisher(STREAM, ingest=cluster.ingest, encoding="raw", shm="off") as pub,
        framebroker.subscribe(STREAM, publish=cluster.publish_endpoint, send_results=False) as sub,
    ):
        got: list[framebroker.Frame] = []

        def network_frames() -> bool:
            pub.send(uniform(len(got)))
            frame = sub.latest(0.05)
            if frame is not None:
                assert frame.lease is None
                got.append(frame)
            assert segments(shm_dir) == []
            return len(got) >= 5

        wait_until(network_frames, 20, "frames over the network")
        assert pub.shm_segment is None and sub.stats.shm_frames == 0


def heartbeat_threads() -> list[threading.Thread]:
    return [t for t in threading.enumerate() if t.name.startswith("framebroker-shm-heartbeat")]


@pytest.mark.parametrize("how", ["close", "collect"])
def test_close_or_collection_unlinks_the_segment_and_ends_the_heartbeat(
    shm_dir: Path, tmp_path: Path, how: str
) -> None:
    """``close()`` unlinks the segment; so does a publisher nobody closed once it is
    collected. Either way its heartbeat thread ends."""
    before = heartbeat_threads()
    with local_cluster(tmp_path) as cluster:
        pub = framebroker.Publisher(STREAM, ingest=cluster.ingest, encoding="raw", shm="on")
        pub.send(uniform(1))
        name = pub.shm_segment
        assert name is not None and segments(shm_dir) == [name]
        assert len(heartbeat_threads()) == len(before) + 1
        if how == "close":
            pub.close()
            pub.close()
        else:
            del pub
            gc.collect()
        assert segments(shm_dir) == []
        assert heartbeat_threads() == before


def test_a_resolution_change_moves_readers_to_a_new_generation(
    shm_dir: Path, tmp_path: Path
) -> None:
    with (
        local_cluster(tmp_path) as cluster,
        framebroker.Publisher(STREAM, ingest=cluster.ingest, encoding="raw") as pub,
        framebroker.subscribe(STREAM, publish=cluster.publish_endpoint, send_results=False) as sub,
    ):
        shapes: set[tuple[int, ...]] = set()

        def leased(shape: tuple[int, ...]) -> bool:
            pub.send(uniform(pub.sent, shape))
            frame = sub.latest(0.05)
            if frame is not None and frame.lease is not None:
                assert (frame.image == frame.seq % 256).all()
                shapes.add(frame.image.shape)
            return shape in shapes

        wait_until(lambda: leased((48, 64, 3)), 20, "a small frame from shared memory")
        small = pub.shm_segment
        wait_until(lambda: leased((96, 128, 3)), 20, "a big frame from shared memory")
        assert small is not None and small.endswith(".0")
        assert segments(shm_dir) == [small[:-1] + "1"]


def test_replay_of_a_raw_recording_goes_through_shared_memory(
    shm_dir: Path, tmp_path: Path, cli: CliProcesses
) -> None:
    """``framebroker produce replay:`` (a Publisher playing the recording, JPEG by its
    settings) writes the recording's raw frames to shared memory (``--shm auto``)."""
    period = 20_000_000
    t0 = time.time_ns() - 10**9
    folder = stream_folder(tmp_path / "rec", "lab/rec")
    writer = RecordingWriter(folder, t0, fsync_interval=1.0)
    for seq in range(20):
        m = make_message("lab/rec", seq, image=uniform(seq), t_capture=t0 + seq * period)
        writer.append(encode_frame(m.header, m.payload), m.header)
    writer.close()
    with (
        local_cluster(tmp_path) as cluster,
        framebroker.subscribe(
            "lab/rep", publish=cluster.publish_endpoint, send_results=False
        ) as sub,
    ):
        env = {"FRAMEBROKER_SHM_DIR": str(shm_dir)}
        args = ("--stream", "lab/rep", "--loop", "--ingest", cluster.ingest)
        proc = cli.start("produce", f"replay:{folder}", *args, env=env)

        def leased_frame() -> bool:
            frame = sub.latest(0.05)
            if frame is None or frame.lease is None:
                return False
            assert int(frame.image[0, 0, 0]) == frame.meta["orig_seq"] % 256
            return True

        wait_until(leased_frame, 30, "a replayed frame from shared memory")
        assert [n.startswith("fb.lab,rep.") for n in segments(shm_dir)] == [True]
        assert cli.stop(proc) == 0
        assert segments(shm_dir) == []


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [({"shm": "yes"}, "shm must be one of"), ({"shm": None}, "shm"), ({"shm_slots": 1}, "2..64")],
)
def test_bad_shm_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    with pytest.raises(framebroker.ConfigError, match=match):
        framebroker.Publisher(STREAM, **kwargs)  # type: ignore[arg-type]


def test_shm_on_without_a_usable_directory_fails_on_start(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("FRAMEBROKER_SHM_DIR", str(tmp_path / "missing"))
    pub = framebroker.Publisher(STREAM, ingest="tcp://127.0.0.1:9", encoding="raw", shm="on")
    with pytest.raises(ShmError, match="missing or not writable"):
        pub.start()
    pub.close()
    # auto falls back to the network on such a host
    with framebroker.Publisher(STREAM, ingest="tcp://127.0.0.1:9", encoding="raw") as auto:
        auto.send(np.zeros((4, 4), np.uint8))
        assert auto.shm_segment is None
