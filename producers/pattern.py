"""A synthetic camera: ``test:640x480@30``. Needs no hardware, exercises every processor.

Each frame shows, over static colour bars: the label (the stream id) and the frame
number, the wall-clock time to the millisecond, a box that moves a few pixels per frame
(something for ``motion``), and a static QR code of the label (something for ``qr``),
when the picture is large enough for each of them.
"""

from __future__ import annotations

import time

import cv2
import numpy as np

from framebroker.errors import SourceError

from .source import FrameSource

_BARS = [  # BGR: white, yellow, cyan, green, magenta, red, blue, black
    (235, 235, 235),
    (16, 235, 235),
    (235, 235, 16),
    (16, 235, 16),
    (235, 16, 235),
    (16, 16, 235),
    (235, 16, 16),
    (16, 16, 16),
]
_FONT = cv2.FONT_HERSHEY_SIMPLEX
_QR_QUIET_MODULES = 4  # the QR spec's quiet zone; OpenCV's encoder adds only 2
_MIN_QR_MODULE_PX = 2


class TestPatternSource(FrameSource):
    """Frames of ``width`` x ``height`` BGR pixels, to be read ``fps`` times per second.

    ``frame_number`` counts the frames made since ``open`` (the first is 0).
    """

    __test__ = False  # not a pytest test class, despite its name

    live = True

    def __init__(self, width: int, height: int, fps: float, *, label: str = "test") -> None:
        if width < 1 or height < 1 or not fps > 0:
            raise SourceError(f"bad test pattern {width}x{height}@{fps}")
        self.width = width
        self.height = height
        self.fps = fps
        self.label = label
        self.description = f"test pattern {width}x{height}@{fps:g}"
        self.frame_number = 0
        self._background: np.ndarray | None = None

    @property
    def pace_fps(self) -> float:
        return self.fps

    def open(self) -> None:
        if self._background is None:
            self._background = self._draw_background()
            self.frame_number = 0

    def read(self) -> np.ndarray:
        if self._background is None:
            raise SourceError(f"{self.description} is not open")
        image = self._background.copy()
        self._draw_box(image)
        self._draw_text(image, time.time())
        self.frame_number += 1
        return image

    def close(self) -> None:
        self._background = None

    # --- drawing ---------------------------------------------------------------------

    def _draw_background(self) -> np.ndarray:
        w, h = self.width, self.height
        image = np.empty((h, w, 3), np.uint8)
        for i, colour in enumerate(_BARS):
            image[:, i * w // len(_BARS) : (i + 1) * w // len(_BARS)] = colour
        image[: self._text_band()] = (40, 40, 40)
        qr = self._qr_image()
        if qr is not None:
            side = qr.shape[0]
            margin = max(1, min(w, h) // 40)
            y, x = h - side - margin, w - side - margin
            image[y : y + side, x : x + side] = qr[:, :, None]
        return image

    def _qr_image(self) -> np.ndarray | None:
        """The label as a QR code with its quiet zone, as large as fits a third of the
        picture's short side; None when it would be too small to decode."""
        try:
            code = cv2.QRCodeEncoder.create().encode(self.label)
        except cv2.error:
            return None
        if code is None or code.size == 0:
            return None
        pad = _QR_QUIET_MODULES - 2
        code = cv2.copyMakeBorder(code, pad, pad, pad, pad, cv2.BORDER_CONSTANT, value=255)
        scale = (min(self.width, self.height) // 3) // code.shape[0]
        if scale < _MIN_QR_MODULE_PX:
            return None
        side = code.shape[0] * scale
        return cv2.resize(code, (side, side), interpolation=cv2.INTER_NEAREST)

    def _text_band(self) -> int:
        return self.height // 6

    def _draw_box(self, image: np.ndarray) -> None:
        w, h = self.width, self.height
        side = max(2, h // 8)
        travel = w - side
        if travel <= 0:
            return
        step = max(1, w // 100)
        pos = (self.frame_number * step) % (2 * travel)
        x = pos if pos < travel else 2 * travel - pos  # back and forth
        y = self._text_band() + max(1, h // 24)
        cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (255, 255, 255), cv2.FILLED)
        cv2.rectangle(image, (x, y), (x + side - 1, y + side - 1), (0, 0, 0), max(1, side // 10))

    def _draw_text(self, image: np.ndarray, now: float) -> None:
        band = self._text_band()
        if band < 12:
            return
        stamp = time.strftime("%H:%M:%S", time.localtime(now)) + f".{int(now * 1000) % 1000:03d}"
        lines = (f"{self.label} #{self.frame_number}", stamp)
        line_px = band // 2
        for i, text in enumerate(lines):
            scale, thickness = self._fit_text(text, line_px)
            baseline_y = (i + 1) * line_px - max(1, line_px // 5)
            cv2.putText(
                image, text, (4, baseline_y), _FONT, scale, (255, 255, 255), thickness, cv2.LINE_AA
            )

    def _fit_text(self, text: str, line_px: int) -> tuple[float, int]:
        """The largest font scale whose text fits the line height and the picture width."""
        (tw, th), _ = cv2.getTextSize(text, _FONT, 1.0, 1)
        scale = min((line_px * 0.7) / th, (self.width - 8) / tw)
        return max(scale, 0.1), max(1, int(scale * 2))
