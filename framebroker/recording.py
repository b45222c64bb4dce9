"""A recording: a folder of streams, each a folder of segment files (:mod:`framebroker.segment`).

::

    DIR/
      lobby/00001712345678901234567.fbseg   closed segments, sorted by their first frame
      lobby/00001712345678901234567.fbidx   and their indexes
      site1/door/...fbseg.open              the segment being written (stream "site1/door")

A stream id's ``/`` makes sub-folders; a path component that is empty, ``.`` or ``..``
gets a ``%`` prefix (``%`` is never part of a stream id), so no stream escapes DIR.
Reading is for replay, export and the viewer: the frames of a stream in time order across
its segments, from a start time on, or the frame shown at a given time.
"""

from __future__ import annotations

import bisect
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from framebroker.errors import ConfigError, RecordingError
from framebroker.protocol import FrameMessage, validate_stream_id
from framebroker.segment import (
    OPEN_SUFFIX,
    SEGMENT_SUFFIX,
    IndexEntry,
    decode_record,
    read_index,
    read_record,
    scan,
    start_of,
)

_ESCAPE = "%"


def stream_folder(root: Path, stream: str) -> Path:
    """The folder of ``stream``'s segments under ``root``."""
    parts = validate_stream_id(stream).split("/")
    return root.joinpath(*(_ESCAPE + p if p in ("", ".", "..") else p for p in parts))


def segments_in(folder: Path) -> list[Path]:
    """The segments of one stream folder, oldest first; the open one (if any) last."""
    closed = [p for p in folder.glob("*" + SEGMENT_SUFFIX) if p.is_file()]
    opened = [p for p in folder.glob("*" + OPEN_SUFFIX) if p.is_file()]
    return sorted(closed, key=start_of) + sorted(opened, key=start_of)


@dataclass(frozen=True, slots=True)
class RecordedFrame:
    """One frame of a recording: the message as recorded, decoded, and where it lies."""

    message: FrameMessage
    raw: bytes  # the wire message byte for byte
    segment: Path
    offset: int

    @property
    def t_capture(self) -> int:
        return self.message.header.t_capture


@dataclass(frozen=True, slots=True)
class StreamInfo:
    """What a listing shows of one recorded stream."""

    stream: str
    segments: int
    frames: int
    bytes: int
    start_ns: int  # the first frame's capture time
    end_ns: int  # the last frame's capture time


class RecordedStream:
    """The segments of one stream in a recording, read by time."""

    def __init__(self, folder: Path, stream: str | None = None) -> None:
        self.folder = folder
        self.segments = segments_in(folder)
        if not self.segments:
            raise RecordingError(f"no recording in {folder}: it holds no segment files")
        self.stream = stream or self._first().message.header.stream
        self._indexes: dict[Path, list[IndexEntry]] = {}

    def _first(self) -> RecordedFrame:
        for segment in self.segments:
            for offset, raw in scan(segment):
                return RecordedFrame(decode_record(segment, offset, raw), raw, segment, offset)
        raise RecordingError(f"no recording in {self.folder}: its segments hold no frame")

    def index(self, segment: Path) -> list[IndexEntry]:
        """A segment's index (cached; an open segment's is re-read, it grows)."""
        if segment.name.endswith(OPEN_SUFFIX):
            return read_index(segment)
        if segment not in self._indexes:
            self._indexes[segment] = read_index(segment)
        return self._indexes[segment]

    def info(self) -> StreamInfo:
        frames, size, start, end = 0, 0, 0, 0
        for segment in self.segments:
            entries = self.index(segment)
            if not entries:
                continue
            frames += len(entries)
            size += segment.stat().st_size
            start = start or entries[0].t_capture
            end = entries[-1].t_capture
        return StreamInfo(self.stream, len(self.segments), frames, size, start, end)

    def frames(self, start_ns: int | None = None) -> Iterator[RecordedFrame]:
        """Every frame from the first captured at or after ``start_ns`` on, in order."""
        for segment in self._segments_from(start_ns):
            for offset, raw in scan(segment):
                frame = RecordedFrame(decode_record(segment, offset, raw), raw, segment, offset)
                if start_ns is None or frame.t_capture >= start_ns:
                    yield frame

    def frame_at(self, t_ns: int) -> RecordedFrame:
        """The frame on show at ``t_ns``: the last captured at or before it (else the first)."""
        for segment in reversed(self._segments_upto(t_ns)):
            entries = self.index(segment)
            times = [e.t_capture for e in entries]
            i = max(0, bisect.bisect_right(times, t_ns) - 1)
            if entries:
                offset = entries[i].offset
                raw = read_record(segment, offset)
                return RecordedFrame(decode_record(segment, offset, raw), raw, segment, offset)
        raise RecordingError(f"stream {self.stream!r} has no frame in {self.folder}")

    def _segments_upto(self, t_ns: int) -> list[Path]:
        chosen = [s for s in self.segments if start_of(s) <= t_ns]
        return chosen or self.segments[:1]

    def _segments_from(self, start_ns: int | None) -> list[Path]:
        if start_ns is None:
            return self.segments
        starts = [start_of(s) for s in self.segments]
        first = max(0, bisect.bisect_right(starts, start_ns) - 1)
        return self.segments[first:]


class Recording:
    """A recording folder: its streams, found by the segment files under it."""

    def __init__(self, root: str | Path) -> None:
        self.root = Path(root)
        if not self.root.is_dir():
            raise RecordingError(f"no recording at {self.root}: not a folder")

    def stream_folders(self) -> list[Path]:
        """Every folder under the root holding segments, sorted."""
        found = {p.parent for p in self.root.rglob("*" + SEGMENT_SUFFIX + "*")}
        return sorted(f for f in found if segments_in(f))

    def streams(self) -> list[RecordedStream]:
        return [RecordedStream(folder) for folder in self.stream_folders()]

    def stream(self, stream: str) -> RecordedStream:
        folder = stream_folder(self.root, stream)
        if not folder.is_dir() or not segments_in(folder):
            names = ", ".join(s.stream for s in self.streams()) or "none"
            raise RecordingError(f"no stream {stream!r} in {self.root} (streams: {names})")
        return RecordedStream(folder, stream)


def open_stream(path: str | Path) -> RecordedStream:
    """The stream recorded at ``path``: a stream's folder, or a recording of one stream."""
    folder = Path(path)
    if not folder.is_dir():
        raise RecordingError(f"no recording at {folder}: not a folder")
    if segments_in(folder):
        return RecordedStream(folder)
    folders = Recording(folder).stream_folders()
    if len(folders) == 1:
        return RecordedStream(folders[0])
    if not folders:
        raise RecordingError(f"no recording in {folder}: no segment files under it")
    names = ", ".join(str(f.relative_to(folder)) for f in folders)
    raise RecordingError(f"{folder} holds several streams ({names}): name one, as DIR/STREAM")


@dataclass(frozen=True, slots=True)
class TimeSpec:
    """A time in a recording as typed: an offset from its start, or a moment (ns)."""

    offset_s: float | None = None
    at_ns: int | None = None

    def resolve(self, start_ns: int) -> int:
        """ns since the epoch, for a recording whose first frame was captured at ``start_ns``."""
        if self.at_ns is not None:
            return self.at_ns
        return start_ns + int((self.offset_s or 0.0) * 1e9)


def parse_time(text: str) -> TimeSpec:
    """Seconds from the recording's start (``"90"``, ``"12.5"``), or an ISO 8601 date and
    time (``"2024-05-01T12:00:03"``, local time unless it names a zone); else ConfigError."""
    text = text.strip()
    try:
        offset = float(text)
    except ValueError:
        pass
    else:
        if not offset >= 0:
            raise ConfigError(f"a time in a recording is 0 or more seconds, got {text!r}")
        return TimeSpec(offset_s=offset)
    try:
        when = datetime.fromisoformat(text)
    except ValueError:
        raise ConfigError(
            f"not a time: {text!r} (seconds from the start, or 2024-05-01T12:00:03)"
        ) from None
    return TimeSpec(at_ns=int(when.timestamp() * 1e9))
