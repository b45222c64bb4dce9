"""``qr``: OpenCV's QR code detector, decoded text and corners of each code."""

from __future__ import annotations

from typing import Any

import cv2
import numpy as np

from ..frame import Frame


class QRReader:
    """Finds and decodes QR codes.

    Result ``{"codes": [{"text": str, "corners": [[x, y] * 4]}, ...], "count": n}``;
    codes that are found but cannot be decoded are left out.
    """

    def __init__(self) -> None:
        self._detector = cv2.QRCodeDetector()

    def __call__(self, frame: Frame) -> dict[str, Any]:
        image = frame.image
        codes = self._decode_multi(image) or self._decode_one(image)
        return {"codes": codes, "count": len(codes)}

    def _decode_multi(self, image: np.ndarray) -> list[dict[str, Any]]:
        ok, texts, points, _ = self._detector.detectAndDecodeMulti(image)
        if not ok or points is None:
            return []
        return [_code(text, corners) for text, corners in zip(texts, points, strict=False) if text]

    def _decode_one(self, image: np.ndarray) -> list[dict[str, Any]]:
        text, points, _ = self._detector.detectAndDecode(image)
        if not text or points is None:
            return []
        return [_code(text, points.reshape(-1, 2))]


def _code(text: str, corners: np.ndarray) -> dict[str, Any]:
    return {"text": text, "corners": [[round(float(x)), round(float(y))] for x, y in corners]}
