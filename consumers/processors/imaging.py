"""Image preparation the built-in processors share: 8-bit gray, bounded size."""

from __future__ import annotations

from collections.abc import Sequence

import cv2
import numpy as np


def to_uint8(gray: np.ndarray) -> np.ndarray:
    """8-bit version of a gray image (uint16 keeps its high byte; float is taken as 0..1)."""
    if gray.dtype == np.uint8:
        return gray
    if gray.dtype == np.uint16:
        return (gray >> 8).astype(np.uint8)
    return np.clip(gray * 255.0, 0, 255).astype(np.uint8)


def downscale(image: np.ndarray, max_width: int) -> tuple[np.ndarray, float]:
    """``image`` shrunk to at most ``max_width`` pixels wide, and the scale used (<= 1)."""
    height, width = image.shape[:2]
    if width <= max_width:
        return image, 1.0
    scale = max_width / width
    size = (max_width, max(1, round(height * scale)))
    return cv2.resize(image, size, interpolation=cv2.INTER_AREA), scale


def scale_box(box: Sequence[int], scale: float) -> list[int]:
    """A box ``(x, y, w, h)`` found on a downscaled image, in the original image's pixels."""
    x, y, w, h = (int(v) for v in box)
    if scale == 1.0:
        return [x, y, w, h]
    return [round(x / scale), round(y / scale), round(w / scale), round(h / scale)]
