"""StreamWriter: one stream's frames into rolling segments, surviving a full disk.

A segment is closed after ``segment_seconds`` (or ``segment_bytes``) and the next frame
opens a new one named after its capture time. When the file system refuses a write (a
full disk, a quota, an I/O error) the segment is cut back to its last whole frame and
closed, the frame is dropped and counted, and the writer pauses: frames arriving in the
next ``retry_s`` seconds are dropped and counted too, then the next frame tries a new
segment. So the recorder keeps running, logs once when writing stops and once when it
resumes, and loses only the frames it could not store.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from pathlib import Path

from framebroker.protocol import FrameHeader
from framebroker.segment import SegmentWriter

log = logging.getLogger("framebroker.record")

DEFAULT_RETRY_S = 1.0


@dataclass(frozen=True)
class WriterSettings:
    segment_seconds: float
    segment_bytes: int
    fsync_interval: float
    retry_s: float = DEFAULT_RETRY_S


class StreamWriter:
    def __init__(self, stream: str, folder: Path, settings: WriterSettings) -> None:
        self.stream = stream
        self.folder = folder
        self.settings = settings
        self.written = 0  # frames stored
        self.bytes = 0
        self.dropped = 0  # frames lost to write errors (disk full) or while paused
        self.closed_segments: list[Path] = []
        self._segment: SegmentWriter | None = None
        self._opened_at = 0.0
        self._paused_until: float | None = None
        self._error = ""

    @property
    def paused(self) -> bool:
        return self._paused_until is not None

    @property
    def open_segment(self) -> Path | None:
        return self._segment.path if self._segment is not None else None

    def write(self, message: bytes | memoryview, header: FrameHeader) -> bool:
        """Store one frame; False when it was dropped (and counted)."""
        now = time.monotonic()
        if self._paused_until is not None and now < self._paused_until:
            self.dropped += 1
            return False
        if self._segment is not None and self._full(now):
            self.close_segment()
        try:
            if self._segment is None:
                self._segment = SegmentWriter(
                    self.folder, header.t_capture, self.settings.fsync_interval
                )
                self._opened_at = now
            self.bytes += self._segment.append(message, header)
        except OSError as exc:
            self._fail(exc, now)
            return False
        self.written += 1
        if self._paused_until is not None:
            log.warning(
                "stream %r: writing again after %s (%d frames dropped so far)",
                self.stream,
                self._error,
                self.dropped,
            )
            self._paused_until = None
        return True

    def _full(self, now: float) -> bool:
        assert self._segment is not None
        return (
            now - self._opened_at >= self.settings.segment_seconds
            or self._segment.size >= self.settings.segment_bytes
        )

    def _fail(self, exc: OSError, now: float) -> None:
        self.dropped += 1
        first = self._paused_until is None
        self._error = exc.strerror or str(exc)
        self._paused_until = now + self.settings.retry_s
        self.close_segment()
        if first:
            log.error(
                "stream %r: cannot write to %s: %s; dropping frames (counted) and retrying "
                "every %gs",
                self.stream,
                self.folder,
                self._error,
                self.settings.retry_s,
            )

    def tick(self) -> None:
        """fsync when due, even without new frames (the loop calls this often)."""
        if self._segment is None:
            return
        try:
            self._segment.maybe_sync()
        except OSError as exc:
            self._fail(exc, time.monotonic())

    def close_segment(self) -> Path | None:
        """Seal the open segment (if any); a seal that fails leaves it for ``recover``."""
        segment, self._segment = self._segment, None
        if segment is None:
            return None
        if not segment.entries:
            segment.abandon()
            segment.path.unlink(missing_ok=True)
            return None
        try:
            closed = segment.close()
        except OSError as exc:
            segment.abandon()
            log.error(
                "stream %r: cannot seal %s (%s); it stays .open and is recovered on the next start",
                self.stream,
                segment.path,
                exc.strerror or exc,
            )
            return None
        self.closed_segments.append(closed)
        return closed
