"""``faces``: OpenCV's bundled frontal-face Haar cascade, boxes of the faces found."""

from __future__ import annotations

import os
from typing import Any

import cv2

from framebroker.errors import ProcessorError

from ..frame import Frame
from .imaging import downscale, scale_box, to_uint8

DEFAULT_CASCADE = "haarcascade_frontalface_default.xml"


def default_cascade_path() -> str:
    folder: str = cv2.data.haarcascades  # type: ignore[attr-defined]
    return os.path.join(folder, DEFAULT_CASCADE)


class FaceDetector:
    """Detects faces with a Haar cascade; result ``{"faces": [[x, y, w, h], ...], "count"}``.

    Frames are searched at most ``max_width`` pixels wide (faster); boxes are in the
    frame's own pixels. Raises ProcessorError when the cascade cannot be loaded.
    """

    def __init__(
        self,
        cascade_path: str | None = None,
        scale_factor: float = 1.1,
        min_neighbors: int = 5,
        min_size: int = 24,
        max_width: int = 640,
    ) -> None:
        path = cascade_path or default_cascade_path()
        if not os.path.isfile(path):
            raise ProcessorError(f"Haar cascade file not found: {path}")
        classifier = cv2.CascadeClassifier()
        try:
            loaded = classifier.load(path)
        except cv2.error as exc:
            reason = str(exc).strip().splitlines()[-1]
            raise ProcessorError(f"cannot load Haar cascade {path}: {reason}") from None
        if not loaded or classifier.empty():
            raise ProcessorError(f"cannot load Haar cascade {path}: not a cascade file")
        self.cascade_path = path
        self._classifier = classifier
        self.scale_factor = scale_factor
        self.min_neighbors = min_neighbors
        self.min_size = min_size
        self.max_width = max_width

    def __call__(self, frame: Frame) -> dict[str, Any]:
        small, scale = downscale(to_uint8(frame.gray), self.max_width)
        found = self._classifier.detectMultiScale(
            cv2.equalizeHist(small),
            scaleFactor=self.scale_factor,
            minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size),
        )
        faces = [scale_box(box, scale) for box in found]
        return {"faces": faces, "count": len(faces)}
