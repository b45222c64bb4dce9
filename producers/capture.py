"""Cameras, video files and network streams through ``cv2.VideoCapture``.

Files and URLs use the FFmpeg backend with open/read timeouts passed as parameters (the
only way OpenCV honours them; both default to 30 s otherwise). For RTSP, when the user has
not set ``OPENCV_FFMPEG_CAPTURE_OPTIONS``, it is set to ``rtsp_transport;tcp``: setting
that variable replaces OpenCV's own default (``rtsp_flags=prefer_tcp``), and TCP avoids
the smeared frames of lost UDP packets.
"""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path
from typing import Literal
from urllib.parse import urlsplit, urlunsplit

import cv2
import numpy as np

from framebroker.errors import SourceError

from .source import FrameSource

log = logging.getLogger("framebroker.producers.capture")

CaptureKind = Literal["device", "file", "url"]

FFMPEG_OPTIONS_ENV = "OPENCV_FFMPEG_CAPTURE_OPTIONS"
RTSP_DEFAULT_OPTIONS = "rtsp_transport;tcp"
FALLBACK_FILE_FPS = 25.0


class CaptureSource(FrameSource):
    """A device index or path, a video file, or a URL, read with ``cv2.VideoCapture``.

    Files report their native rate as :attr:`pace_fps` (the grabber spaces the reads);
    at their end ``read`` returns None, or starts over when ``loop`` is set. A live source
    whose read fails raises SourceError so that the grabber reopens it.
    """

    def __init__(
        self,
        target: int | str,
        *,
        kind: CaptureKind,
        loop: bool = False,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
    ) -> None:
        self.target = target
        self.kind = kind
        self.loop = loop
        self.open_timeout = open_timeout
        self.read_timeout = read_timeout
        self.live = kind != "file"
        self.description = f"camera {target}" if kind == "device" else redact(str(target))
        self._cap: cv2.VideoCapture | None = None
        self._fps: float | None = None

    @property
    def pace_fps(self) -> float | None:
        return self._fps if self.kind == "file" else None

    @property
    def native_fps(self) -> float | None:
        """The rate the source reports (CAP_PROP_FPS), when it reports a sane one."""
        return self._fps

    def open(self) -> None:
        if self._cap is not None:
            return
        if self.kind == "file" and not Path(str(self.target)).is_file():
            raise SourceError(f"no such video file: {self.target}")
        if self.kind == "url" and str(self.target).lower().startswith("rtsp"):
            os.environ.setdefault(FFMPEG_OPTIONS_ENV, RTSP_DEFAULT_OPTIONS)
        cap = self._open_capture()
        if not cap.isOpened():
            cap.release()
            raise SourceError(self._open_failure())
        if self.kind == "device":
            cap.set(cv2.CAP_PROP_BUFFERSIZE, 1)  # honoured by V4L2: less queued staleness
        fps = cap.get(cv2.CAP_PROP_FPS)
        self._fps = fps if math.isfinite(fps) and 0 < fps <= 1000 else None
        if self.kind == "file" and self._fps is None:
            log.info("%s reports no frame rate; playing at %g fps", self.target, FALLBACK_FILE_FPS)
            self._fps = FALLBACK_FILE_FPS
        self._cap = cap

    def _open_capture(self) -> cv2.VideoCapture:
        if self.kind == "device":
            # Device backends (V4L2, ...) reject the FFmpeg timeout parameters.
            return cv2.VideoCapture(self.target)
        params = [
            cv2.CAP_PROP_OPEN_TIMEOUT_MSEC,
            max(1, int(self.open_timeout * 1000)),
            cv2.CAP_PROP_READ_TIMEOUT_MSEC,
            max(1, int(self.read_timeout * 1000)),
        ]
        return cv2.VideoCapture(str(self.target), cv2.CAP_FFMPEG, params)

    def _open_failure(self) -> str:
        target = self.description
        if self.kind == "device":
            return (
                f"cannot open camera {self.target}: no such device, no permission, "
                "or it is in use by another program"
            )
        if self.kind == "file":
            return f"cannot open video file {target}: not a video OpenCV/FFmpeg can read"
        return (
            f"cannot open {target}: unreachable, refused, not a video stream, or no "
            f"answer within {self.open_timeout:g}s (check the URL, credentials and network)"
        )

    def read(self) -> np.ndarray | None:
        cap = self._cap
        if cap is None:
            raise SourceError(f"{self.description} is not open")
        ok, image = cap.read()
        if ok and image is not None:
            return image
        if self.kind != "file":
            raise SourceError(
                f"{self.description}: no frame (stream ended, camera lost, "
                f"or nothing within {self.read_timeout:g}s)"
            )
        if not self.loop:
            return None
        return self._rewind(cap)

    def _rewind(self, cap: cv2.VideoCapture) -> np.ndarray:
        """Start a looping file over: seek to 0, or reopen if the container cannot seek."""
        cap.set(cv2.CAP_PROP_POS_FRAMES, 0)
        ok, image = cap.read()
        if ok and image is not None:
            return image
        self.close()
        self.open()
        if self._cap is not None:
            ok, image = self._cap.read()
            if ok and image is not None:
                return image
        raise SourceError(f"cannot loop {self.description}: it yields no frames from its start")

    def close(self) -> None:
        cap, self._cap = self._cap, None
        if cap is not None:
            cap.release()


def redact(url: str) -> str:
    """``rtsp://user:secret@cam/live`` -> ``rtsp://user:***@cam/live`` for logs and errors."""
    try:
        parts = urlsplit(url)
    except ValueError:
        return url
    if not parts.password:
        return url
    host = parts.netloc.rpartition("@")[2]
    return urlunsplit(parts._replace(netloc=f"{parts.username}:***@{host}"))
