"""A full disk at the sink: results wait, one copy each, and none is lost once space is back.

The sink's database lives on a small tmpfs mounted for the test. A real consumer sends its
results to the acknowledged results port (at least once). The disk is then filled: the
sink cannot write, acknowledges nothing, and the consumer resends every result every 2 s.
The sink must keep ONE pending entry per result (its memory bounded by distinct results,
not by resends). When space comes back every result the consumer made is stored, once.

Mounting needs root; without it the test skips on a user's machine and fails in CI
(tests/conftest.py ``require``).
"""

from __future__ import annotations

import contextlib
import errno
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from framebroker.consumers import Consumer, Frame
from framebroker.testing import local_cluster, make_message, wait_until
from tests.conftest import require

STREAM = "disk/cam1"
TMPFS_SIZE = "2m"
FULL_S = 5.0  # the disk stays full this long: every waiting result is resent twice


@contextlib.contextmanager
def small_tmpfs(where: Path) -> Iterator[Path]:
    where.mkdir()
    mounted = subprocess.run(
        ["mount", "-t", "tmpfs", "-o", f"size={TMPFS_SIZE}", "tmpfs", str(where)],
        capture_output=True,
        text=True,
        check=False,
    )
    require(mounted.returncode == 0, f"root to mount a tmpfs ({mounted.stderr.strip()})")
    try:
        yield where
    finally:
        subprocess.run(["umount", "-l", str(where)], check=True)
        where.rmdir()


def fill(folder: Path) -> Path:
    """Write zeros into ``folder/filler`` until the file system is full."""
    filler = folder / "filler"
    chunk = bytes(16 << 10)
    with filler.open("wb", buffering=0) as f:
        while True:
            try:
                f.write(chunk)
            except OSError as exc:
                assert exc.errno == errno.ENOSPC, exc
                break
    return filler


@pytest.mark.slow
def test_full_disk_keeps_one_copy_per_result_and_loses_none(tmp_path):
    made: list[tuple[str, int, int]] = []
    lock = threading.Lock()

    def processor(frame: Frame) -> dict[str, int]:
        with lock:
            made.append((frame.stream, frame.session, frame.seq))
        return {"seq": frame.seq}

    with small_tmpfs(tmp_path / "disk") as disk, local_cluster(disk) as cluster:
        config = cluster.consumer_config(name="disk", streams=(STREAM,))
        with Consumer(config, processor).run_in_thread() as consumer:
            seq = 0

            def publish_for(seconds: float) -> None:
                nonlocal seq
                until = time.monotonic() + seconds
                while time.monotonic() < until:
                    cluster.publish(make_message(STREAM, seq=seq))
                    seq += 1
                    time.sleep(0.03)

            publish_for(0.5)
            cluster.wait_for_results(1)
            filler = fill(disk)
            publish_for(FULL_S)
            sink = cluster.sink.stats()
            stored = {(r.stream, r.session, r.seq) for r in cluster.stored()}
            with lock:
                waiting = set(made) - stored
            assert sink.store_errors >= 1, "the disk never filled up"
            assert consumer.stats.results_resent > 0, "nothing was resent while it was full"
            assert 0 < sink.pending <= len(waiting)  # one entry per result waiting ...
            assert sink.duplicates > 0  # ... though resent copies arrived
            print(
                f"\nwhile full: {len(waiting)} results waiting, {sink.pending} pending at the"
                f" sink, {consumer.stats.results_resent} resent, {sink.duplicates} copies"
            )

            filler.unlink()  # space is back
            publish_for(0.5)

            def all_stored() -> bool:
                """every result the consumer made is in the database"""
                with lock:
                    return len(cluster.stored()) == len(set(made))

            wait_until(all_stored, timeout=20)
        rows = [(r.stream, r.session, r.seq) for r in cluster.stored()]
        assert consumer.stats.results_dropped == 0
        assert len(rows) == len(set(rows))  # none stored twice
        assert set(rows) == set(made)  # none lost
        assert len(made) == consumer.stats.processed == len(set(made))
        assert cluster.sink.stats().pending == 0
    assert not (tmp_path / "disk").exists()  # unmounted and removed
