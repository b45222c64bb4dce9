"""JPEG decoding: simplejpeg first, OpenCV as the fallback; both agree, reduced sizes too."""

from __future__ import annotations

import numpy as np
import pytest

from framebroker import codec
from framebroker.errors import CodecError
from framebroker.protocol import FrameHeader


def header(shape=(121, 161, 3), pixfmt="bgr24") -> FrameHeader:
    return FrameHeader(
        stream="cam1",
        session=1,
        seq=3,
        t_capture=0,
        t_publish=0,
        encoding="jpeg",
        shape=shape,
        pixfmt=pixfmt,
    )


def picture(height=121, width=161, channels=3) -> np.ndarray:
    """Smooth gradients (JPEG-friendly), odd sizes so reduced sizes round up."""
    y, x = np.mgrid[0:height, 0:width]
    planes = [(x * 255 // width), (y * 255 // height), ((x + y) * 255 // (width + height))]
    image = np.stack(planes[:channels], axis=-1).astype(np.uint8)
    return image[:, :, 0] if channels == 1 else image


@pytest.mark.parametrize("reduce", [1, 2, 4, 8])
@pytest.mark.parametrize("gray", [False, True])
def test_simplejpeg_and_opencv_decode_the_same_pixels(reduce, gray):
    assert codec.simplejpeg is not None, "simplejpeg is a runtime dependency"
    image = picture(channels=1 if gray else 3)
    payload = codec.encode(image, "jpeg", 90).payload
    fast = codec.decode_jpeg(payload, gray, reduce)
    slow = codec.decode_jpeg_cv2(payload, gray, reduce)
    expected = (-(-121 // reduce), -(-161 // reduce))  # ceil, as libjpeg scales
    assert fast.shape == slow.shape == (expected if gray else (*expected, 3))
    assert fast.dtype == np.uint8
    assert np.abs(fast.astype(int) - slow.astype(int)).mean() < 1.0
    h = header(image.shape, "gray8" if gray else "bgr24")
    np.testing.assert_array_equal(codec.decode(h, memoryview(payload), reduce), fast)


def test_decode_falls_back_to_opencv_without_simplejpeg(monkeypatch):
    payload = codec.encode(picture(), "jpeg").payload
    monkeypatch.setattr(codec, "simplejpeg", None)
    assert codec.decode(header(), payload).shape == (121, 161, 3)
    assert codec.decode(header(), payload, 4).shape == (31, 41, 3)


def test_corrupt_and_truncated_jpeg_are_codec_errors():
    payload = codec.encode(picture(), "jpeg").payload
    with pytest.raises(CodecError, match="corrupt JPEG"):
        codec.decode(header(), b"\xff\xd8 not really a jpeg")
    with pytest.raises(CodecError, match="corrupt JPEG"):
        codec.decode(header(), bytes(payload)[: len(payload) // 3])
    with pytest.raises(CodecError, match="reduce"):
        codec.decode(header(), payload, 3)
