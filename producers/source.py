"""The one abstraction for "a source of frames": open, read the next image, close.

Implementations: :class:`~producers.capture.CaptureSource` (device, file, URL through
OpenCV) and :class:`~producers.pattern.TestPatternSource` (synthetic, needs no camera).
Library users may write their own (a picamera2 wrapper, a screen grabber...) and hand a
factory of it to :class:`~producers.producer.Producer`.

A source is used by one thread at a time (the grabber's reader thread opens, reads and
closes it); it need not be thread-safe.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from types import TracebackType

import numpy as np


class FrameSource(ABC):
    """A source of images (numpy arrays, BGR or gray, uint8).

    ``read`` blocks until the next frame is available and returns a *new* array each time
    (the caller keeps it while the source goes on). It returns ``None`` at a clean end
    (a file without looping) and raises :class:`~framebroker.errors.SourceError` when the
    source failed (device unplugged, stream lost, read timeout).
    """

    #: What to call the source in log lines and errors.
    description: str = "frame source"

    #: Live sources (cameras, URLs) may come back: failing to open them is retried with
    #: backoff and an end is unexpected. A recording (a file) that cannot be opened is a
    #: permanent error and its end is a clean end.
    live: bool = True

    @property
    def pace_fps(self) -> float | None:
        """The rate at which reads should be spaced, or None if ``read`` paces itself.

        Files and synthetic sources can be read as fast as the CPU allows; they report
        their native rate here and the grabber spaces the reads. Valid after ``open``.
        """
        return None

    @abstractmethod
    def open(self) -> None:
        """Open the source; raise SourceError with a message saying what to check.

        Opening an open source does nothing (so ``with open_source(...)`` works).
        """

    @abstractmethod
    def read(self) -> np.ndarray | None:
        """The next image, ``None`` at a clean end; raise SourceError on failure."""

    @abstractmethod
    def close(self) -> None:
        """Release the source. Safe to call more than once and after a failed open."""

    def __enter__(self) -> FrameSource:
        self.open()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self.description}>"
