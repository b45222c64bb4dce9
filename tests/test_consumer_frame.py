"""Frame: header accessors, pixels decoded lazily and once, raw frames without a copy."""

from __future__ import annotations

import numpy as np
import pytest

from framebroker import codec, protocol
from framebroker.consumers import Frame
from framebroker.errors import CodecError
from framebroker.protocol import FrameHeader


def header(encoding="jpeg", shape=(48, 64, 3), pixfmt="bgr24"):
    return FrameHeader(
        stream="site1/cam1",
        session=5,
        seq=9,
        t_capture=100,
        t_publish=101,
        encoding=encoding,
        shape=shape,
        pixfmt=pixfmt,
        meta={"where": "gate"},
    )


def test_accessors_and_lazy_single_decode():
    image = np.zeros((48, 64, 3), np.uint8)
    image[:, 32:] = 200
    data = protocol.encode_frame(header(), codec.encode(image).payload)
    frame = Frame.from_message(protocol.decode_frame(data), t_received=123)
    assert (frame.stream, frame.session, frame.seq, frame.t_capture) == ("site1/cam1", 5, 9, 100)
    assert frame.meta == {"where": "gate"} and frame.t_received == 123
    assert frame.nbytes == len(frame.payload)
    assert not frame._decoded  # nothing decoded until asked
    assert frame.image is frame.image  # decoded once
    assert frame.image.shape == (48, 64, 3)
    assert frame.gray.shape == (48, 64) and frame.gray is frame.gray
    assert frame.decode(2).shape == (24, 32, 3)
    assert "site1/cam1" in repr(frame)


def test_raw_frames_are_views_of_the_message_buffer():
    image = np.arange(48 * 64, dtype=np.uint8).reshape(48, 64)
    data = bytearray(protocol.encode_frame(header("raw", (48, 64), "gray8"), image.tobytes()))
    frame = Frame.from_message(protocol.decode_frame(memoryview(data)))
    np.testing.assert_array_equal(frame.image, image)
    assert np.shares_memory(frame.image, np.frombuffer(data, np.uint8))
    assert frame.gray is frame.image


def test_corrupt_pixels_fail_only_when_touched():
    frame = Frame(header(), b"\xff\xd8 not really a jpeg")
    assert frame.seq == 9
    with pytest.raises(CodecError, match="corrupt JPEG"):
        _ = frame.image
