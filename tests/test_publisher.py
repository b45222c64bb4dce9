"""``framebroker.Publisher``: numpy images in, frames with seq, session and meta out.

Frames go through a real broker (in this process, free loopback ports) to a real
subscription; bad images and settings fail with clear errors before anything is sent.
"""

from __future__ import annotations

import argparse
import inspect
import threading
import time
from collections.abc import Iterator

import numpy as np
import pytest

import framebroker
from framebroker import shm
from framebroker.broker import Broker, BrokerConfig
from framebroker.producers import cli as produce_cli
from tests.conftest import free_port

LOOPBACK = "tcp://127.0.0.1:0"


@pytest.fixture
def broker() -> Iterator[Broker]:
    config = BrokerConfig(ingest=LOOPBACK, publish=LOOPBACK, control=LOOPBACK)
    with Broker(config).run_in_thread() as running:
        yield running


def picture(seq: int, dtype: str = "uint8", channels: int = 3) -> np.ndarray:
    """A frame that tells its seq apart: a level per seq and a bright square."""
    shape = (60, 80) if channels == 1 else (60, 80, channels)
    image = np.full(shape, (seq * 10) % 200, dtype)
    image[10:30, 20:40] = 250
    return image


def publish_until(
    pub: framebroker.Publisher,
    frames: framebroker.Subscription,
    count: int,
    images: dict[int, np.ndarray],
    **image_kw: object,
) -> list[tuple[framebroker.Frame, np.ndarray]]:
    """Send a frame every 20 ms (in a thread) until ``count`` have arrived; each with a
    copy of its image, taken on arrival (a raw frame on this host is read from the
    publisher's shared-memory ring, whose slot a later frame overwrites: frames no longer
    intact once copied are left out)."""
    stop = threading.Event()

    def send() -> None:
        i = 0
        while not stop.wait(0.02):
            image = picture(i, **image_kw)  # type: ignore[arg-type]
            seq = pub.send(image, meta={"i": str(i)})
            images[seq] = image
            i += 1

    sender = threading.Thread(target=send)
    sender.start()
    got = []
    try:
        while len(got) < count:
            frame = frames.latest(timeout=10)
            assert frame is not None, f"only {len(got)} frames arrived"
            image = frame.image.copy()
            if frame.intact:
                got.append((frame, image))
    finally:
        stop.set()
        sender.join(5)
    return got


@pytest.mark.parametrize(
    ("encoding", "dtype", "channels"),
    [("jpeg", "uint8", 3), ("jpeg", "uint8", 1), ("raw", "uint8", 3), ("raw", "uint16", 1)],
)
def test_frames_arrive_in_order_with_their_meta_and_pixels(
    broker: Broker, encoding: str, dtype: str, channels: int
) -> None:
    images: dict[int, np.ndarray] = {}
    with (
        framebroker.Publisher(
            "pub/cam", ingest=broker.ingest_endpoint, encoding=encoding, meta={"site": "lab"}
        ) as pub,
        framebroker.subscribe(
            "pub/cam", publish=broker.publish_endpoint, send_results=False
        ) as frames,
    ):
        got = publish_until(pub, frames, 8, images, dtype=dtype, channels=channels)
    seqs = [frame.seq for frame, _ in got]
    assert seqs == sorted(set(seqs))
    # raw frames on this host come from shared memory (shm="auto"; the very first ones
    # may come by the network, before the broker's beacon), JPEG by the network only
    leased = [frame.lease is not None for frame, _ in got]
    assert any(leased) == (encoding == "raw" and shm.usable()), leased
    for frame, image in got:
        assert frame.stream == "pub/cam" and frame.session == pub.session
        assert dict(frame.meta) == {"site": "lab", "i": str(frame.seq)}
        assert frame.header.encoding == encoding and frame.header.t_publish >= frame.t_capture
        sent = images[frame.seq]
        assert image.shape == sent.shape and image.dtype == sent.dtype
        if encoding == "raw":
            assert np.array_equal(image, sent)
        else:  # lossy, but the same picture
            diff = np.abs(image.astype(int) - sent.astype(int))
            assert diff.mean() < 3, diff.mean()


def test_capture_time_is_the_callers_when_given(broker: Broker) -> None:
    captured = time.time_ns() - 2_000_000_000  # two seconds ago
    with (
        framebroker.Publisher("pub/old", ingest=broker.ingest_endpoint) as pub,
        framebroker.subscribe("pub/old", publish=broker.publish_endpoint) as frames,
    ):
        frame = None
        while frame is None:
            pub.send(picture(0), t_capture=captured)
            frame = frames.latest(timeout=0.1)
    assert frame.t_capture == captured
    assert 2.0 <= frame.age < 60


def test_send_never_blocks_without_a_broker() -> None:
    """Nobody listens on the port: frames are dropped, the caller goes on."""
    with framebroker.Publisher("nobody/cam", ingest=f"tcp://127.0.0.1:{free_port()}") as pub:
        for i in range(300):
            assert pub.send(picture(i)) == i
        assert not pub.connected
    assert pub.sent == 300


@pytest.mark.parametrize(
    ("image", "encoding", "match"),
    [
        ([[1, 2], [3, 4]], "raw", "numpy array, not a list"),
        (np.zeros((4, 4), np.float64), "raw", "float64"),
        (np.zeros((4, 4, 2), np.uint8), "raw", "2 channels"),
        (np.zeros((0, 4), np.uint8), "raw", "each side"),
        (np.zeros((2, 4, 4, 3), np.uint8), "raw", "HxW or HxWxC"),
        (np.zeros((4, 4, 4), np.uint8), "jpeg", "encoding='raw'"),
        (np.zeros((4, 4), np.uint16), "jpeg", "encoding='raw'"),
    ],
)
def test_a_bad_image_is_a_clear_value_error(image: object, encoding: str, match: str) -> None:
    pub = framebroker.Publisher("bad/cam", ingest="tcp://127.0.0.1:9", encoding=encoding)
    with pytest.raises(framebroker.ImageError, match=match) as caught:
        pub.send(image)  # type: ignore[arg-type]
    assert isinstance(caught.value, ValueError)
    assert pub.sent == 0
    pub.close()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"stream": ""}, "stream"),
        ({"stream": "a\x00b"}, "stream"),
        ({"quality": 0}, "quality"),
        ({"quality": 80.5}, "quality"),
        ({"encoding": "png"}, "encoding"),
        ({"meta": {"bad key": "x"}}, "metadata key"),
        ({"meta": {"n": 1}}, "must be a string"),
        ({"broker": "bad host"}, "endpoint"),
    ],
)
def test_bad_settings_are_config_errors(kwargs: dict[str, object], match: str) -> None:
    settings: dict[str, object] = {"stream": "cam1", **kwargs}
    with pytest.raises(framebroker.ConfigError, match=match):
        framebroker.Publisher(**settings)  # type: ignore[arg-type]


def test_bad_frame_meta_or_capture_time_and_send_after_close() -> None:
    pub = framebroker.Publisher("cam1", ingest=f"tcp://127.0.0.1:{free_port()}")
    with pytest.raises(framebroker.ConfigError, match="metadata"):
        pub.send(picture(0), meta={"x": 1})  # type: ignore[dict-item]
    with pytest.raises(framebroker.ConfigError, match="t_capture"):
        pub.send(picture(0), t_capture=-1)
    pub.close()
    pub.close()
    with pytest.raises(framebroker.TransportError, match="closed"):
        pub.send(picture(0))


def test_parameters_have_the_names_and_defaults_of_produce_flags() -> None:
    parser = argparse.ArgumentParser()
    produce_cli.add_arguments(parser)
    defaults = vars(parser.parse_args([]))
    params = inspect.signature(framebroker.Publisher).parameters
    shared = set(params) & set(defaults)
    assert shared == {
        "stream",
        "broker",
        "ingest",
        "encoding",
        "quality",
        "meta",
        "shm",
        "shm_slots",
    }
    for name in shared - {"stream"}:  # produce derives the stream from SOURCE
        assert params[name].default == defaults[name], name
