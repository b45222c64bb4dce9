"""RecordingLibrary: what the viewer shows of a recording folder (``view --recordings DIR``).

The reading is the core's (:mod:`framebroker.recording`); this module only turns it into
what the pages need: the list of recorded streams with their time ranges, and the frame
on show at a moment, as a JPEG, with where its neighbours lie so a page can play the
stream at its original timing. Times cross HTTP as nanoseconds from the stream's first
frame (``offset_ns``): they stay below 2**53 for 104 days, so JavaScript numbers hold them
exactly, which nanoseconds since the epoch would not.

A recording may be written while it is viewed (segments are added, retention removes
old ones): each look-up compares the stream's segment files with the ones it read and
rebuilds its timeline when they changed; a segment still open is read on from where it
was left, at most every ``GROWING_REFRESH_S``; a segment removed between the listing and the
read shows as a :class:`~framebroker.errors.RecordingError`, not a crash.
"""

from __future__ import annotations

import bisect
import logging
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from framebroker.errors import RecordingError
from framebroker.protocol import FrameHeader
from framebroker.recording import RecordedStream, Recording, segments_in
from framebroker.segment import OPEN_SUFFIX, RECORD_PREFIX, decode_record, read_record, scan

from .hub import LatestFrame, jpeg_of

log = logging.getLogger("framebroker.viewer")

GROWING_REFRESH_S = 2.0  # the open segment of a stream being recorded is read on at most
# this often (it has no index yet: its new records are scanned)


@dataclass(frozen=True)
class RecordedStill:
    """One recorded frame as a page gets it: the JPEG and its place in the stream."""

    header: FrameHeader
    jpeg: bytes
    offset_ns: int  # its capture time from the stream's first frame
    next_offset_ns: int | None  # the next frame's (None: this is the last)
    index: int  # its position in the stream, from 0


@dataclass
class _Timeline:
    """Where every frame of one stream lies, in capture-time order as recorded."""

    stream: str
    segments: list[Path]  # as listed when built
    times: list[int] = field(default_factory=list)  # capture times, ns since the epoch
    places: list[tuple[Path, int]] = field(default_factory=list)  # (segment, offset)
    open_next: int | None = None  # where reading the open segment goes on
    read_at: float = 0.0  # monotonic time of the last read


class RecordingLibrary:
    """The streams of one recording folder, read for the viewer (blocking file I/O: the
    viewer calls it from its executor)."""

    def __init__(self, root: str | Path, quality: int = 80) -> None:
        self.root = Path(root)
        self.quality = quality
        self.stills_served = 0
        self._timelines: dict[Path, _Timeline] = {}

    def streams(self) -> list[dict[str, Any]]:
        """Every recorded stream: name, time range (ns since the epoch), frames, size."""
        out = []
        for folder in Recording(self.root).stream_folders():
            try:
                line = self._timeline(folder)
                size = sum(p.stat().st_size for p in line.segments)
            except (RecordingError, OSError) as exc:  # removed or torn meanwhile
                log.debug("recording %s not listed: %s", folder, exc)
                self._timelines.pop(folder, None)
                continue
            if not line.times:
                continue
            out.append(
                {
                    "stream": line.stream,
                    "start_ns": line.times[0],
                    "end_ns": line.times[-1],
                    "duration_ns": line.times[-1] - line.times[0],
                    "frames": len(line.times),
                    "segments": len(line.segments),
                    "bytes": size,
                }
            )
        return sorted(out, key=lambda s: s["stream"])

    def still(self, name: str, offset_ns: int) -> RecordedStill:
        """The frame on show ``offset_ns`` after the stream's first frame (the last one
        captured at or before then; the first for a negative offset)."""
        folder = Recording(self.root).stream(name).folder
        line = self._timeline(folder)
        if not line.times:
            raise RecordingError(f"stream {name!r} has no frame in {self.root}")
        start = line.times[0]
        index = max(0, bisect.bisect_right(line.times, start + offset_ns) - 1)
        segment, offset = line.places[index]
        try:
            frame = decode_record(segment, offset, read_record(segment, offset))
        except OSError as exc:  # retention removed the segment since it was listed
            self._timelines.pop(folder, None)
            raise RecordingError(f"stream {name!r}: {exc}") from None
        header = frame.header
        jpeg = jpeg_of(LatestFrame(header, bytes(frame.payload), 0, 0), self.quality)
        if jpeg is None:
            raise RecordingError(f"stream {name!r}: the frame at {offset_ns} ns cannot be shown")
        nxt = line.times[index + 1] - start if index + 1 < len(line.times) else None
        self.stills_served += 1
        return RecordedStill(header, jpeg, header.t_capture - start, nxt, index)

    def _timeline(self, folder: Path) -> _Timeline:
        """The stream's timeline: built once from the segment indexes, then kept up to
        date: rebuilt when its segments change, and the open segment read on from where it
        was left (at most every ``GROWING_REFRESH_S``)."""
        segments = segments_in(folder)
        line = self._timelines.get(folder)
        now = time.monotonic()
        if line is None or line.segments != segments:
            line = self._timelines[folder] = _build(RecordedStream(folder), segments)
            line.read_at = now
        elif line.open_next is not None and now - line.read_at >= GROWING_REFRESH_S:
            _read_open(line, segments[-1])
            line.read_at = now
        return line


def _build(stream: RecordedStream, segments: list[Path]) -> _Timeline:
    line = _Timeline(stream.stream, segments)
    for segment in segments:
        if segment.name.endswith(OPEN_SUFFIX):
            _read_open(line, segment)
            continue
        for entry in stream.index(segment):
            line.times.append(entry.t_capture)
            line.places.append((segment, entry.offset))
    return line


def _read_open(line: _Timeline, segment: Path) -> None:
    """Add the records of the open ``segment`` written since it was last read."""
    for offset, message in scan(segment, line.open_next):
        line.times.append(decode_record(segment, offset, message).header.t_capture)
        line.places.append((segment, offset))
        line.open_next = offset + RECORD_PREFIX + len(message)
    if line.open_next is None:  # nothing whole yet: from the start next time
        line.open_next = 0
