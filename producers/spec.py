"""SOURCE strings: what ``framebroker produce SOURCE`` accepts, parsed to a SourceSpec.

::

    0, 1, ...                 a camera by device index (also /dev/video0)
    video.mp4, ./test         a video file (a path; prefix ./ for a file named "test")
    rtsp://host/path          a network stream: rtsp, rtsps, rtmp, http(s) (e.g. MJPEG)
    test:640x480@30           the synthetic test pattern (also "test", "test:320x240",
                              "test:@15"; default 640x480 at 30 fps)
    replay:DIR/STREAM         a recording (``framebroker record``), with its timing; also
                              replay:DIR when DIR holds one stream (producers.replayer)

Parsing is pure (no OpenCV); :func:`make_source` builds the FrameSource for a spec.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import PurePath
from typing import Literal
from urllib.parse import urlsplit

from framebroker.config import parse_size
from framebroker.errors import ConfigError, RecordingError, SourceError
from framebroker.recording import open_stream

from .capture import CaptureSource
from .pattern import TestPatternSource
from .source import FrameSource

SourceKind = Literal["test", "device", "file", "url", "replay"]

URL_SCHEMES = ("rtsp", "rtsps", "rtmp", "rtmps", "http", "https")
DEFAULT_PATTERN_SIZE = (640, 480)
DEFAULT_PATTERN_FPS = 30.0
MAX_PATTERN_FPS = 1000.0

_TEST = re.compile(r"test(?::(?P<size>[^@]*)(?:@(?P<fps>.*))?)?\Z")
_URL = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://")
_STREAM_BAD = re.compile(r"[^A-Za-z0-9_.\-/]+")


@dataclass(frozen=True, slots=True)
class SourceSpec:
    """A parsed SOURCE: its kind and what to open."""

    kind: SourceKind
    target: str | int  # device index or path, file path, URL; "" for the test pattern
    width: int = 0  # test pattern only
    height: int = 0
    fps: float = 0.0


def parse_source(text: str) -> SourceSpec:
    """Parse a SOURCE string; raise ConfigError saying what is accepted."""
    spec = text.strip()
    if not spec:
        raise ConfigError("SOURCE is empty: give a device index, a file, a URL or test:WxH@FPS")
    if spec == "test" or spec.startswith("test:"):
        return _parse_pattern(spec)
    if spec.startswith("replay:"):
        folder = spec[len("replay:") :]
        if not folder:
            raise ConfigError("replay: needs a recording folder, e.g. replay:rec/cam1")
        return SourceSpec("replay", folder)
    if spec.isdigit():
        return SourceSpec("device", int(spec))
    if spec.startswith("/dev/video"):
        return SourceSpec("device", spec)
    match = _URL.match(spec)
    if match:
        scheme = match["scheme"].lower()
        if scheme == "file":
            return SourceSpec("file", spec[len("file://") :])
        if scheme not in URL_SCHEMES:
            raise ConfigError(
                f"unsupported URL scheme {scheme!r} in {spec!r}; use one of "
                f"{', '.join(URL_SCHEMES)}"
            )
        return SourceSpec("url", spec)
    return SourceSpec("file", spec)


def _parse_pattern(spec: str) -> SourceSpec:
    match = _TEST.match(spec)
    hint = "the test pattern looks like test:640x480@30 (size and @fps optional)"
    if not match:
        raise ConfigError(f"bad test pattern {spec!r}: {hint}")
    width, height = DEFAULT_PATTERN_SIZE
    if match["size"]:
        try:
            width, height = parse_size(match["size"])
        except ConfigError as exc:
            raise ConfigError(f"bad test pattern {spec!r}: {exc}") from None
    fps = DEFAULT_PATTERN_FPS
    if match["fps"] is not None:
        try:
            fps = float(match["fps"])
        except ValueError:
            raise ConfigError(f"bad test pattern {spec!r}: fps is not a number") from None
        if not 0 < fps <= MAX_PATTERN_FPS:
            raise ConfigError(f"bad test pattern {spec!r}: fps must be in (0, {MAX_PATTERN_FPS:g}]")
    return SourceSpec("test", "", width, height, fps)


def default_stream_name(text: str) -> str:
    """A stream id derived from SOURCE when --stream is not given.

    ``test:...`` -> ``test``; device ``0`` -> ``cam0``; ``/videos/door.mp4`` -> ``door``;
    ``rtsp://cam7:554/stream1`` -> ``cam7/stream1``.
    """
    spec = parse_source(text)
    if spec.kind == "test":
        raw = "test"
    elif spec.kind == "replay":
        try:
            return open_stream(str(spec.target)).stream  # the recorded stream's id
        except RecordingError as exc:
            raise ConfigError(str(exc)) from None
    elif spec.kind == "device":
        raw = f"cam{spec.target}" if isinstance(spec.target, int) else PurePath(spec.target).name
    elif spec.kind == "file":
        raw = PurePath(str(spec.target)).stem
    else:
        parts = urlsplit(str(spec.target))
        raw = f"{parts.hostname or 'stream'}{parts.path}"
    name = _STREAM_BAD.sub("_", raw).strip("/")
    name = re.sub(r"/{2,}", "/", name)
    return name[:200] or "stream"


def make_source(
    text: str,
    *,
    label: str = "",
    loop: bool = False,
    open_timeout: float = 10.0,
    read_timeout: float = 5.0,
) -> FrameSource:
    """Build the (not yet opened) FrameSource for a SOURCE string.

    ``label`` is drawn into the test pattern (text and QR code); ``loop`` replays files;
    the timeouts bound how long OpenCV may block opening or reading a file or URL.
    """
    spec = parse_source(text)
    if spec.kind == "replay":
        raise SourceError(
            f"{text!r} is a recording: play it with producers.replayer.Replayer "
            "(framebroker produce does) or Publisher.replay, not as a FrameSource"
        )
    if spec.kind == "test":
        return TestPatternSource(spec.width, spec.height, spec.fps, label=label or "test")
    return CaptureSource(
        spec.target,
        kind=spec.kind,
        loop=loop,
        open_timeout=open_timeout,
        read_timeout=read_timeout,
    )


def open_source(
    text: str,
    *,
    label: str = "",
    loop: bool = False,
    open_timeout: float = 10.0,
    read_timeout: float = 5.0,
) -> FrameSource:
    """Build and open the FrameSource for a SOURCE string (raises SourceError).

    The caller closes it (or uses it as a context manager).
    """
    source = make_source(
        text, label=label, loop=loop, open_timeout=open_timeout, read_timeout=read_timeout
    )
    source.open()
    return source
