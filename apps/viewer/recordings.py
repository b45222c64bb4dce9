"""RecordingLibrary: what the viewer shows of a recording folder (``view --recordings DIR``).

The reading is the core's (:mod:`framebroker.recording`); this module only turns it into
what the pages need: the list of recorded streams with their time ranges, and the frame
on show at a moment, as a JPEG, with where its neighbours lie so a page can play the
stream at its original timing. Times cross HTTP as nanoseconds from the stream's first
frame (``offset_ns``): they stay below 2**53 for 104 days, so JavaScript numbers hold them
exactly, which nanoseconds since the epoch would not.

A recording may be written while it is viewed (segments are added, retention removes
old ones): each look-up compares the stream's segment files with the ones it read and
opens the stream again when they changed, or every ``GROWING_REFRESH_S`` while its last
segment is still open; a segment removed between the listing and the
read shows as a :class:`~framebroker.errors.RecordingError`, not a crash.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from framebroker.errors import RecordingError
from framebroker.protocol import FrameHeader
from framebroker.recording import RecordedStream, Recording, segments_in

from .hub import LatestFrame, jpeg_of

log = logging.getLogger("framebroker.viewer")

GROWING_REFRESH_S = 2.0  # a stream being recorded is re-read at most this often (its open
# segment has no index yet and is scanned whole)


@dataclass(frozen=True)
class RecordedStill:
    """One recorded frame as a page gets it: the JPEG and its place in the stream."""

    header: FrameHeader
    jpeg: bytes
    offset_ns: int  # its capture time from the stream's first frame
    next_offset_ns: int | None  # the next frame's (None: this is the last)
    index: int  # its position in the stream, from 0


class RecordingLibrary:
    """The streams of one recording folder, read for the viewer (blocking file I/O: the
    viewer calls it from its executor)."""

    def __init__(self, root: str | Path, quality: int = 80) -> None:
        self.root = Path(root)
        self.quality = quality
        self.stills_served = 0
        self._streams: dict[Path, RecordedStream] = {}
        self._times: dict[Path, list[int]] = {}  # every frame's capture time, per stream
        self._opened: dict[Path, float] = {}  # when each stream was (re)read, monotonic

    def _open(self, folder: Path) -> RecordedStream:
        cached = self._streams.get(folder)
        if cached is not None and cached.segments == segments_in(folder):
            fresh = time.monotonic() - self._opened.get(folder, 0.0) < GROWING_REFRESH_S
            if fresh or not _growing(cached):
                return cached
        stream = RecordedStream(folder)
        self._streams[folder] = stream
        self._opened[folder] = time.monotonic()
        self._times.pop(folder, None)
        return stream

    def streams(self) -> list[dict[str, Any]]:
        """Every recorded stream: name, time range (ns since the epoch), frames, size."""
        out = []
        for folder in Recording(self.root).stream_folders():
            try:
                info = self._open(folder).info()
            except (RecordingError, OSError) as exc:  # removed or torn meanwhile
                log.debug("recording %s not listed: %s", folder, exc)
                continue
            out.append(
                {
                    "stream": info.stream,
                    "start_ns": info.start_ns,
                    "end_ns": info.end_ns,
                    "duration_ns": info.end_ns - info.start_ns,
                    "frames": info.frames,
                    "segments": info.segments,
                    "bytes": info.bytes,
                }
            )
        return sorted(out, key=lambda s: s["stream"])

    def stream(self, name: str) -> RecordedStream:
        """The recorded stream ``name`` (RecordingError when the folder has none)."""
        folder = Recording(self.root).stream(name).folder
        return self._open(folder)

    def still(self, name: str, offset_ns: int) -> RecordedStill:
        """The frame on show ``offset_ns`` after the stream's first frame (the last one
        captured at or before then; the first for a negative offset)."""
        stream = self.stream(name)
        times = self._frame_times(stream)
        if not times:
            raise RecordingError(f"stream {name!r} has no frame in {self.root}")
        start = times[0]
        index = max(0, bisect.bisect_right(times, start + offset_ns) - 1)
        try:
            frame = stream.frame_at(times[index])
        except OSError as exc:  # retention removed the segment since it was listed
            self._streams.pop(stream.folder, None)
            raise RecordingError(f"stream {name!r}: {exc}") from None
        header = frame.message.header
        jpeg = jpeg_of(LatestFrame(header, bytes(frame.message.payload), 0, 0), self.quality)
        if jpeg is None:
            raise RecordingError(f"stream {name!r}: the frame at {offset_ns} ns cannot be shown")
        nxt = times[index + 1] - start if index + 1 < len(times) else None
        self.stills_served += 1
        return RecordedStill(header, jpeg, header.t_capture - start, nxt, index)

    def _frame_times(self, stream: RecordedStream) -> list[int]:
        times = self._times.get(stream.folder)
        if times is None:
            times = [e.t_capture for seg in stream.segments for e in stream.index(seg)]
            self._times[stream.folder] = times
        return times


def _growing(stream: RecordedStream) -> bool:
    """True when the stream's last segment is still being written (its times may grow)."""
    return bool(stream.segments) and stream.segments[-1].name.endswith(".open")
