"""Frames made without a camera: headers, frame messages and consumer frames for tests.

A processor test needs frames that look exactly like what a producer sends: a valid
header (stream, session, seq, times, shape, pixel format) and a payload that fits it.
These factories make them from a numpy image, or from a small synthetic picture that
changes with ``seq``, encoded as ``raw`` or ``jpeg`` by the same codec the producer uses.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any

import numpy as np

from framebroker import codec
from framebroker.consumers.frame import Frame
from framebroker.protocol import FrameHeader, FrameMessage, validate_stream_id

DEFAULT_SESSION = 1


def synthetic_image(width: int = 64, height: int = 48, seq: int = 0) -> np.ndarray:
    """A BGR picture (uint8) of diagonal ramps, shifted by ``seq``: each frame differs."""
    if width < 1 or height < 1:
        raise ValueError(f"image size must be positive, not {width}x{height}")
    ramp = (np.add.outer(np.arange(height), np.arange(width)) * 4 + seq * 8) % 256
    return np.dstack([ramp, ramp[::-1], ramp[:, ::-1]]).astype(np.uint8)


def make_message(
    stream: str = "cam1",
    seq: int = 0,
    *,
    session: int = DEFAULT_SESSION,
    encoding: str = "raw",
    width: int = 64,
    height: int = 48,
    image: np.ndarray | None = None,
    quality: int = 80,
    t_capture: int | None = None,
    meta: Mapping[str, Any] | None = None,
) -> FrameMessage:
    """A valid frame message, as :func:`framebroker.protocol.decode_frame` would return it.

    The pixels are ``image`` (BGR, BGRA, gray8 or gray16) or a ``width`` x ``height``
    :func:`synthetic_image`; ``encoding`` is ``raw`` or ``jpeg`` (CodecError otherwise).
    ``t_capture`` defaults to now; the publish time is now. Send it with
    ``encode_frame(message.header, message.payload)`` or ``LocalCluster.publish``.
    """
    pixels = synthetic_image(width, height, seq) if image is None else image
    encoded = codec.encode(pixels, encoding, quality)
    now = time.time_ns()
    header = FrameHeader(
        stream=validate_stream_id(stream),
        session=session,
        seq=seq,
        t_capture=now if t_capture is None else t_capture,
        t_publish=now,
        encoding=encoding,
        shape=encoded.shape,
        dtype=encoded.dtype,
        pixfmt=encoded.pixfmt,
        meta=dict(meta or {}),
    )
    return FrameMessage(header, memoryview(bytes(encoded.payload)))


def make_frame(stream: str = "cam1", seq: int = 0, **options: Any) -> Frame:
    """A consumer's :class:`~framebroker.consumers.Frame`, what a processor is called with.

    Takes the options of :func:`make_message`; received now.
    """
    message = make_message(stream, seq, **options)
    return Frame.from_message(message, t_received=time.time_ns())


def make_header(stream: str = "cam1", seq: int = 0, **options: Any) -> FrameHeader:
    """The header of :func:`make_message` with these options."""
    return make_message(stream, seq, **options).header
