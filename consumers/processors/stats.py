"""``stats``: brightness, sharpness and size of each frame."""

from __future__ import annotations

from typing import Any

import cv2

from ..frame import Frame


def stats(frame: Frame) -> dict[str, Any]:
    """Brightness (mean gray level), sharpness (variance of the Laplacian: low = blurry),
    width, height, channels and the payload's size in bytes."""
    image = frame.image
    gray = frame.gray
    height, width = image.shape[:2]
    return {
        "width": int(width),
        "height": int(height),
        "channels": 1 if image.ndim == 2 else int(image.shape[2]),
        "brightness": round(float(gray.mean()), 3),
        "sharpness": round(float(cv2.Laplacian(gray, cv2.CV_64F).var()), 3),
        "bytes": frame.nbytes,
    }
