"""``motion``: frame differencing per stream, a score and boxes of moving regions."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from framebroker.errors import ConfigError

from ..frame import Frame
from .imaging import downscale, scale_box, to_uint8


class MotionDetector:
    """Compares each frame with the previous one of the same stream.

    ``score`` is the fraction of pixels that changed by more than ``threshold`` gray
    levels (0.0 on identical frames, and on a stream's first frame). ``boxes`` are
    ``[x, y, w, h]`` in the frame's pixels of changed regions covering at least
    ``min_area`` of the picture, largest first. Frames are compared at most ``max_width``
    wide (and blurred) for speed and to ignore sensor noise.
    """

    def __init__(self, threshold: int = 25, min_area: float = 0.0005, max_width: int = 320) -> None:
        if not 0 < threshold < 256:
            raise ConfigError(f"motion threshold must be 1..255, not {threshold}")
        if not 0 <= min_area < 1:
            raise ConfigError(f"motion min_area is a fraction of the frame, not {min_area}")
        self.threshold = threshold
        self.min_area = min_area
        self.max_width = max_width
        self._previous: dict[str, np.ndarray] = {}  # per stream: last blurred small gray

    def __call__(self, frame: Frame) -> dict[str, Any]:
        small, scale = downscale(to_uint8(frame.gray), self.max_width)
        current = cv2.GaussianBlur(small, (5, 5), 0)
        previous = self._previous.get(frame.stream)
        self._previous[frame.stream] = current
        if previous is None or previous.shape != current.shape:
            return {"score": 0.0, "boxes": []}
        diff = cv2.absdiff(previous, current)
        _, mask = cv2.threshold(diff, self.threshold, 255, cv2.THRESH_BINARY)
        score = cv2.countNonZero(mask) / mask.size
        return {"score": round(score, 5), "boxes": self._boxes(mask, scale)}

    def _boxes(self, mask: np.ndarray, scale: float) -> list[list[int]]:
        mask = cv2.dilate(mask, np.ones((3, 3), np.uint8), iterations=2)
        contours, _ = cv2.findContours(mask, cv2.RETR_EXTERNAL, cv2.CHAIN_APPROX_SIMPLE)
        min_pixels = self.min_area * mask.size
        rects = [cv2.boundingRect(c) for c in contours]
        rects = [r for r in rects if r[2] * r[3] >= min_pixels]
        rects.sort(key=lambda r: r[2] * r[3], reverse=True)
        return [scale_box(r, scale) for r in rects]

    def reset(self, stream: str | None = None) -> None:
        """Forget the previous frame of ``stream`` (or of every stream)."""
        if stream is None:
            self._previous.clear()
        else:
            self._previous.pop(stream, None)
