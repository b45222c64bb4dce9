"""Export: a time range of a recorded stream as a video file, or one still image.

Videos go through OpenCV's VideoWriter (its FFmpeg backend, part of the opencv wheels):
``.mp4`` as MPEG-4 Part 2 (``mp4v``), ``.mkv`` and ``.avi`` as Motion JPEG - codecs every
common player opens. Every recorded frame in the range becomes one video frame, at the
range's mean frame rate (a video file has one rate; the original capture times stay in
the recording). A still at a time is the frame on show then; a JPEG frame exported to a
``.jpg`` is written byte for byte as recorded (never re-encoded).
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from framebroker import codec
from framebroker.errors import CodecError, ConfigError, RecordingError
from framebroker.recording import RecordedFrame, RecordedStream

log = logging.getLogger("framebroker.record")

FOURCC = {".mp4": "mp4v", ".mkv": "MJPG", ".avi": "MJPG"}
STILL_SUFFIXES = (".jpg", ".jpeg", ".png")
DEFAULT_FPS = 25.0  # a range of one frame has no rate of its own


@dataclass(frozen=True)
class Exported:
    path: Path
    frames: int
    fps: float
    width: int
    height: int


def to_bgr8(frame: RecordedFrame) -> np.ndarray:
    """The frame's pixels as 8-bit BGR (what video writers take)."""
    image = codec.decode(frame.message.header, frame.message.payload)
    if image.dtype == np.uint16:
        image = (image >> 8).astype(np.uint8)
    elif image.dtype != np.uint8:
        image = np.clip(image * 255.0, 0, 255).astype(np.uint8)
    if image.ndim == 2:
        return cv2.cvtColor(image, cv2.COLOR_GRAY2BGR)
    if image.shape[2] == 4:
        return cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return image


def export_video(
    stream: RecordedStream, out: Path, start_ns: int | None = None, end_ns: int | None = None
) -> Exported:
    """Write the frames captured in [start_ns, end_ns] to ``out`` (.mp4, .mkv or .avi)."""
    fourcc = FOURCC.get(out.suffix.lower())
    if fourcc is None:
        raise ConfigError(f"export to {out.name}: use .mp4, .mkv or .avi (or .jpg/.png with --at)")
    frames = [f for f in stream.frames(start_ns) if end_ns is None or f.t_capture <= end_ns]
    if not frames:
        raise RecordingError(f"stream {stream.stream!r} has no frame in the range asked")
    span = (frames[-1].t_capture - frames[0].t_capture) / 1e9
    fps = (len(frames) - 1) / span if span > 0 else DEFAULT_FPS
    first = to_bgr8(frames[0])
    height, width = first.shape[:2]
    out.parent.mkdir(parents=True, exist_ok=True)
    writer = cv2.VideoWriter(str(out), cv2.VideoWriter.fourcc(*fourcc), fps, (width, height))
    if not writer.isOpened():
        raise RecordingError(f"OpenCV cannot write {out} ({fourcc}); is the folder writable?")
    try:
        for frame in frames:
            image = first if frame is frames[0] else to_bgr8(frame)
            if image.shape[:2] != (height, width):
                image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
            writer.write(image)
    finally:
        writer.release()
    log.info("exported %d frames of %r to %s (%.2f fps)", len(frames), stream.stream, out, fps)
    return Exported(out, len(frames), fps, width, height)


def export_still(stream: RecordedStream, at_ns: int, out: Path) -> Path:
    """Write the frame on show at ``at_ns`` to ``out`` (.jpg or .png)."""
    suffix = out.suffix.lower()
    if suffix not in STILL_SUFFIXES:
        raise ConfigError(f"a still is a .jpg or .png, not {out.name}")
    frame = stream.frame_at(at_ns)
    out.parent.mkdir(parents=True, exist_ok=True)
    if suffix in (".jpg", ".jpeg") and frame.message.header.encoding == "jpeg":
        out.write_bytes(frame.message.payload)
        return out
    try:
        ok = cv2.imwrite(str(out), to_bgr8(frame))
    except cv2.error as exc:
        raise CodecError(f"cannot write {out}: {exc}") from exc
    if not ok:
        raise RecordingError(f"OpenCV could not write {out}")
    return out
