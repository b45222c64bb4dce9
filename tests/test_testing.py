"""framebroker.testing: the polling helper, the frame factories and the local cluster."""

from __future__ import annotations

import importlib.metadata
import subprocess
import sys
import time

import numpy as np
import pytest
import zmq

import framebroker.testing
from framebroker import codec
from framebroker.errors import CodecError, ProtocolError
from framebroker.protocol import FrameMessage, check_payload, decode_frame, encode_frame
from framebroker.testing import (
    LocalCluster,
    local_cluster,
    make_frame,
    make_header,
    make_message,
    synthetic_image,
    wait_until,
)
from framebroker.testing import cluster as cluster_module
from tests.conftest import ROOT

# --- wait_until ----------------------------------------------------------------------


def test_wait_until_returns_the_first_truthy_value():
    values = iter([0, None, [], "ready"])
    assert wait_until(lambda: next(values), timeout=5, what="a value") == "ready"


def test_wait_until_fails_naming_what_it_waited_for_and_the_last_value():
    stored: list[int] = []
    with pytest.raises(AssertionError, match=r"after 0.05 s waiting for 3 results \(last: False\)"):
        wait_until(lambda: len(stored) >= 3 and stored, timeout=0.05, what="3 results")


def test_wait_until_names_the_predicate_by_its_docstring():
    def stored() -> int:
        """the sink to store something"""
        return 0

    with pytest.raises(AssertionError, match="waiting for the sink to store something"):
        wait_until(stored, timeout=0.02)


def test_wait_until_lets_errors_of_the_predicate_through():
    def broken() -> bool:
        raise KeyError("oops")

    with pytest.raises(KeyError):
        wait_until(broken, timeout=5)


def test_wait_until_polls_at_the_given_interval():
    calls: list[float] = []
    with pytest.raises(AssertionError):
        wait_until(lambda: calls.append(time.monotonic()), timeout=0.35, interval=0.1)
    # the first call, then one after each sleep of 0.1 s (a busy machine only sleeps longer)
    assert 2 <= len(calls) <= 5


# --- frame factories -----------------------------------------------------------------


@pytest.mark.parametrize("encoding", ["raw", "jpeg"])
def test_made_messages_are_valid_on_the_wire(encoding):
    message = make_message("site1/cam1", seq=4, session=9, encoding=encoding, width=32, height=24)
    decoded = decode_frame(encode_frame(message.header, message.payload))  # payload checked
    h = decoded.header
    assert (h.stream, h.session, h.seq, h.encoding, h.shape) == (
        "site1/cam1",
        9,
        4,
        encoding,
        (24, 32, 3),
    )
    assert h.t_capture <= h.t_publish <= time.time_ns()


def test_made_frames_carry_the_given_pixels_and_differ_by_seq():
    gray16 = np.arange(12, dtype=np.uint16).reshape(3, 4) * 1000
    frame = make_frame("cam2", seq=3, image=gray16, meta={"site": "gate"}, t_capture=5)
    assert (frame.stream, frame.seq, frame.t_capture) == ("cam2", 3, 5)
    assert frame.meta == {"site": "gate"}
    assert frame.header.pixfmt == "gray16" and np.array_equal(frame.image, gray16)
    assert not np.array_equal(synthetic_image(seq=0), synthetic_image(seq=1))
    check_payload(make_header(encoding="jpeg"), codec.encode(synthetic_image(), "jpeg").payload)


def test_bad_factory_arguments_raise_the_projects_errors():
    with pytest.raises(ProtocolError):
        make_message("$system")
    with pytest.raises(CodecError):
        make_message(encoding="png")
    with pytest.raises(ValueError):
        synthetic_image(0, 10)


# --- the package and its pytest plugin -----------------------------------------------


def test_every_exported_name_is_importable():
    for name in framebroker.testing.__all__:
        assert getattr(framebroker.testing, name) is not None
    with pytest.raises(AttributeError):
        framebroker.testing.no_such_helper  # noqa: B018


def test_the_pytest_plugin_is_registered_and_light():
    plugins = importlib.metadata.entry_points(group="pytest11")
    assert [p.value for p in plugins if p.name == "framebroker"] == ["framebroker.testing.plugin"]
    code = "import framebroker.testing.plugin, sys; print(sorted(sys.modules))"
    loaded = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, check=True, cwd=ROOT
    ).stdout
    for heavy in ("'zmq'", "'cv2'", "'numpy'", "'framebroker.broker'"):
        assert heavy not in loaded


def test_a_users_processor_test_runs_with_only_the_installed_plugin(tmp_path):
    """examples/test_brightness.py in its own pytest, as a user runs it: no conftest."""
    run = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-q",
            "-p",
            "no:cacheprovider",
            f"--basetemp={tmp_path / 'inner'}",
            str(ROOT / "examples" / "test_brightness.py"),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=tmp_path,
    )
    assert run.returncode == 0, run.stdout + run.stderr
    assert "3 passed" in run.stdout


# --- the local cluster ---------------------------------------------------------------


def test_local_cluster_binds_free_loopback_ports_and_releases_them(tmp_path):
    with local_cluster(tmp_path) as cluster:
        endpoints = [
            cluster.ingest,
            cluster.publish_endpoint,
            cluster.control,
            cluster.work,
            cluster.results,
            cluster.acked_results,
        ]
        assert all(e.startswith("tcp://127.0.0.1:") for e in endpoints)
        assert len(set(endpoints)) == 6 and cluster.db == tmp_path / "results.sqlite"
    ctx = zmq.Context()
    try:
        for endpoint in endpoints:  # each port is free again: binding it works
            sock = ctx.socket(zmq.PULL)
            sock.bind(endpoint)
            sock.close(linger=0)
    finally:
        ctx.term()


def test_published_frames_reach_subscribers_once_the_broker_has_them(tmp_path):
    with local_cluster(tmp_path) as cluster:
        cluster.publish(make_message("cam1", seq=0))
        ctx = zmq.Context()
        sub = ctx.socket(zmq.SUB)
        try:
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(cluster.publish_endpoint)  # the broker's cache sends the newest frame
            assert sub.poll(5000)
            assert decode_frame(sub.recv()).header.seq == 0
            cluster.publish(make_message("cam1", seq=1))
            seqs = {0}
            while 1 not in seqs and sub.poll(5000):
                seqs.add(decode_frame(sub.recv()).header.seq)  # repeats of 0 may come first
            assert 1 in seqs
        finally:
            sub.close(linger=0)
            ctx.term()


def test_a_frame_the_broker_refuses_fails_the_publish_loudly(tmp_path, monkeypatch):
    monkeypatch.setattr(cluster_module, "_RESEND_S", 0.01)
    too_short = FrameMessage(make_header("bad", seq=5), memoryview(b"not 64x48 pixels"))
    with local_cluster(tmp_path) as cluster:
        with pytest.raises(AssertionError, match="the broker to take bad seq 5"):
            cluster.publish(too_short, timeout=0.3)
        assert cluster.broker.stats().malformed > 0


def test_results_are_read_back_through_the_sinks_reader(framebroker_cluster: LocalCluster):
    cluster = framebroker_cluster
    assert cluster.stored() == []
    seen: list[int] = []

    def count_pixels(frame):
        seen.append(frame.seq)
        return {"pixels": int(frame.image.size), "seq": frame.seq}

    with cluster.consumer(count_pixels, name="counter", streams=("cam1",)):
        for seq in range(3):
            cluster.publish(make_message("cam1", seq=seq, width=10, height=5))
        stored = cluster.wait_for_results(1, consumer="counter")
    assert stored[0].result == {"pixels": 150, "seq": stored[0].seq}
    # every frame processed is stored once (the consumer may skip frames: newest wins)
    wait_until(lambda: [r.seq for r in cluster.stored("cam1")] == sorted(set(seen)))
    assert cluster.stored(consumer="someone-else") == []
