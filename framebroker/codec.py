"""Pixels to wire payloads and back: JPEG (OpenCV/libjpeg-turbo) or raw numpy bytes."""

from __future__ import annotations

from dataclasses import dataclass

import cv2
import numpy as np

from framebroker.errors import CodecError
from framebroker.protocol import FrameHeader

_PIXFMT = {
    (3, "uint8"): "bgr24",
    (1, "uint8"): "gray8",
    (4, "uint8"): "bgra32",
    (1, "uint16"): "gray16",
}


@dataclass(frozen=True, slots=True)
class Encoded:
    payload: bytes | memoryview
    shape: tuple[int, ...]
    dtype: str
    pixfmt: str


def pixel_format(image: np.ndarray) -> str:
    channels = 1 if image.ndim == 2 else image.shape[2]
    try:
        return _PIXFMT[(channels, str(image.dtype))]
    except KeyError:
        raise CodecError(f"unsupported image: {channels} channels of {image.dtype}") from None


def encode(image: np.ndarray, encoding: str = "jpeg", quality: int = 80) -> Encoded:
    """Encode an image for the wire. Raw payloads are the array's bytes (C order)."""
    pixfmt = pixel_format(image)
    if encoding == "raw":
        data = np.ascontiguousarray(image)
        return Encoded(data.data.cast("B"), tuple(data.shape), str(data.dtype), pixfmt)
    if encoding != "jpeg":
        raise CodecError(f"unknown encoding {encoding!r}; use jpeg or raw")
    if image.dtype != np.uint8 or pixfmt == "bgra32":
        raise CodecError(f"JPEG needs 8-bit gray or BGR pixels, not {pixfmt}")
    ok, buf = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, int(quality)])
    if not ok:
        raise CodecError("JPEG encoding failed")
    return Encoded(buf.tobytes(), tuple(image.shape), "uint8", pixfmt)


def decode(header: FrameHeader, payload: bytes | memoryview, reduce: int = 1) -> np.ndarray:
    """Decode a payload to a numpy array as described by ``header``.

    Raw frames come back as a read-only view of the message buffer (no copy).
    ``reduce`` (1, 2, 4 or 8) asks libjpeg for a smaller JPEG decode, which is much faster.
    """
    if header.encoding == "raw":
        expected = int(np.prod(header.shape)) * np.dtype(header.dtype).itemsize
        if len(payload) != expected:
            raise CodecError(
                f"raw payload of {len(payload)} bytes does not match shape "
                f"{header.shape} of {header.dtype} ({expected} bytes)"
            )
        return np.frombuffer(payload, dtype=header.dtype).reshape(header.shape)
    if header.encoding != "jpeg":
        raise CodecError(f"unknown encoding {header.encoding!r}")
    gray = header.pixfmt == "gray8"
    flags = {
        1: cv2.IMREAD_COLOR,
        2: cv2.IMREAD_REDUCED_COLOR_2,
        4: cv2.IMREAD_REDUCED_COLOR_4,
        8: cv2.IMREAD_REDUCED_COLOR_8,
    }
    gflags = {
        1: cv2.IMREAD_GRAYSCALE,
        2: cv2.IMREAD_REDUCED_GRAYSCALE_2,
        4: cv2.IMREAD_REDUCED_GRAYSCALE_4,
        8: cv2.IMREAD_REDUCED_GRAYSCALE_8,
    }
    if reduce not in flags:
        raise CodecError(f"reduce must be 1, 2, 4 or 8, not {reduce}")
    image = cv2.imdecode(np.frombuffer(payload, np.uint8), (gflags if gray else flags)[reduce])
    if image is None:
        raise CodecError(
            f"corrupt JPEG payload ({len(payload)} bytes) in stream "
            f"{header.stream!r} seq {header.seq}"
        )
    return image
