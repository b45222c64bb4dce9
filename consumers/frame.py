"""Frame: what a processor, or ``framebroker.subscribe``, hands you: the header, the payload,
pixels decoded on first use, and how old the frame is."""

from __future__ import annotations

import time
from collections.abc import Mapping
from typing import Any, Protocol

import cv2
import numpy as np

from framebroker import codec
from framebroker.protocol import FrameHeader, FrameMessage


class Lease(Protocol):
    """Where a frame's payload lives when it is a view of a shared-memory slot."""

    def intact(self) -> bool:
        """Whether the writer has not overwritten the slot since the frame was read."""
        ...


class Frame:
    """One received frame.

    ``stream``, ``session``, ``seq``, ``t_capture`` (ns since the epoch) and ``meta`` come
    from the producer's header; ``age`` is how many seconds ago the frame was captured.
    ``image`` decodes the payload once, on first access (JPEG -> BGR or gray array; raw ->
    a read-only view of the message buffer, no copy: copy it before modifying it).
    ``gray`` is the single-channel version, also computed once. A frame is handed to one
    processor call at a time, so the caches need no lock.

    A frame read from shared memory (``lease`` set) is a view of the writer's slot: the
    writer never waits, so it may overwrite the slot ``--shm-slots`` - 1 frames later.
    ``intact`` says whether it has not yet; a consumer drops a result computed on a frame
    that is no longer intact (counted as ``torn``).
    """

    __slots__ = ("_decoded", "_gray", "header", "lease", "payload", "t_received", "t_start")

    def __init__(
        self, header: FrameHeader, payload: bytes | memoryview, t_received: int = 0
    ) -> None:
        self.header = header
        self.payload = payload
        self.t_received = t_received  # ns since the epoch, when the consumer got it
        # ns since the epoch, when a Subscription handed it out (0: not yet); a result sent
        # for the frame counts its processing from here (the sink's frame age, t_start)
        self.t_start = 0
        self.lease: Lease | None = None  # set when the payload is a shared-memory view
        self._decoded: dict[int, np.ndarray] = {}
        self._gray: np.ndarray | None = None

    @classmethod
    def from_message(cls, message: FrameMessage, t_received: int = 0) -> Frame:
        return cls(message.header, message.payload, t_received)

    @property
    def stream(self) -> str:
        return self.header.stream

    @property
    def session(self) -> int:
        return self.header.session

    @property
    def seq(self) -> int:
        return self.header.seq

    @property
    def t_capture(self) -> int:
        return self.header.t_capture

    @property
    def age(self) -> float:
        """Seconds since the frame was captured, now (this host's clock against the
        producer's: across hosts it includes their clock offset)."""
        return (time.time_ns() - self.header.t_capture) / 1e9

    @property
    def meta(self) -> Mapping[str, Any]:
        """The producer's metadata (``produce --meta``, ``Publisher(meta=)``, ``send(meta=)``)."""
        return self.header.meta

    @property
    def intact(self) -> bool:
        """False once the shared-memory slot this frame views has been overwritten (always
        True for a frame that came over the network)."""
        return self.lease is None or self.lease.intact()

    @property
    def nbytes(self) -> int:
        """Size of the payload on the wire."""
        return len(self.payload)

    @property
    def image(self) -> np.ndarray:
        """The pixels, decoded on first access (raises CodecError on a corrupt payload)."""
        return self.decode(1)

    def decode(self, reduce: int = 1) -> np.ndarray:
        """The pixels at 1/``reduce`` scale (1, 2, 4, 8; JPEG decodes much faster reduced).

        Each scale is decoded at most once per frame.
        """
        image = self._decoded.get(reduce)
        if image is None:
            image = codec.decode(self.header, self.payload, reduce)
            self._decoded[reduce] = image
        return image

    @property
    def gray(self) -> np.ndarray:
        """The pixels as one channel, computed once."""
        if self._gray is None:
            self._gray = to_gray(self.image)
        return self._gray

    def __repr__(self) -> str:
        h = self.header
        return (
            f"Frame(stream={h.stream!r}, session={h.session}, seq={h.seq}, "
            f"encoding={h.encoding!r}, shape={h.shape}, bytes={self.nbytes})"
        )


def to_gray(image: np.ndarray) -> np.ndarray:
    """One channel of ``image`` (gray images are returned as they are)."""
    if image.ndim == 2:
        return image
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2GRAY)
    if image.shape[2] == 1:
        return image[:, :, 0]
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)
