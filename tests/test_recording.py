"""The recording format and its policies, on real files: segments, recovery, retention,
the trigger condition language, the pre-event buffer, export through OpenCV."""

from __future__ import annotations

import os
import time
from pathlib import Path

import cv2
import numpy as np
import pytest

from framebroker.errors import ConfigError, RecordingError
from framebroker.protocol import encode_frame
from framebroker.record import Condition, Subject, export_still, export_video
from framebroker.record.retention import Retention, enforce
from framebroker.record.trigger import EventGate
from framebroker.recording import Recording, open_stream, parse_time, stream_folder
from framebroker.segment import (
    OPEN_SUFFIX,
    SegmentWriter,
    build_index,
    read_index,
    recover,
    scan,
)
from framebroker.testing import make_message

T0 = 1_700_000_000_000_000_000


def frame(stream: str, seq: int, t: int, encoding: str = "jpeg") -> tuple[bytes, object]:
    m = make_message(stream, seq, encoding=encoding, t_capture=t, width=32, height=24)
    return encode_frame(m.header, m.payload), m.header


def write_segment(folder: Path, stream: str, seqs: range, t0: int, period_ns: int) -> Path:
    writer = SegmentWriter(folder, t0 + seqs[0] * period_ns, fsync_interval=1.0)
    for seq in seqs:
        data, header = frame(stream, seq, t0 + seq * period_ns)
        writer.append(data, header)  # type: ignore[arg-type]
    return writer.close()


def test_a_segment_keeps_every_message_byte_for_byte_with_an_index(tmp_path: Path) -> None:
    sent = [frame("cam1", seq, T0 + seq * 1000) for seq in range(5)]
    writer = SegmentWriter(tmp_path, T0, fsync_interval=0.1)
    for data, header in sent:
        writer.append(data, header)  # type: ignore[arg-type]
    assert writer.path.name.endswith(OPEN_SUFFIX)
    closed = writer.close()
    assert closed.name == f"{T0:020d}.fbseg"
    assert [m for _, m in scan(closed)] == [data for data, _ in sent]
    index = read_index(closed)
    assert [(e.seq, e.t_capture) for e in index] == [(s, T0 + s * 1000) for s in range(5)]
    assert index == build_index(closed)


def test_a_torn_tail_is_cut_off_and_the_open_segment_recovered(tmp_path: Path) -> None:
    writer = SegmentWriter(tmp_path, T0, fsync_interval=1.0)
    for seq in range(3):
        data, header = frame("cam1", seq, T0 + seq)
        writer.append(data, header)  # type: ignore[arg-type]
    writer.abandon()  # as after kill -9: still .open, no index
    with open(writer.path, "ab") as f:
        f.write(b"\x00\x00\x10\x00half a record")  # what a crash mid-write leaves
    assert len(list(scan(writer.path))) == 3
    closed = recover(writer.path)
    assert closed is not None and closed.exists() and not writer.path.exists()
    assert [e.seq for e in read_index(closed)] == [0, 1, 2]
    with pytest.raises(RecordingError, match="not a framebroker segment"):
        list(scan(closed.with_suffix(".fbidx")))


def test_the_recording_reads_streams_by_time_across_segments(tmp_path: Path) -> None:
    period = 100_000_000  # 10 fps
    folder = stream_folder(tmp_path, "site1/door")
    write_segment(folder, "site1/door", range(0, 10), T0, period)
    write_segment(folder, "site1/door", range(10, 20), T0, period)
    write_segment(stream_folder(tmp_path, "lobby"), "lobby", range(0, 3), T0, period)
    recording = Recording(tmp_path)
    assert sorted(s.stream for s in recording.streams()) == ["lobby", "site1/door"]
    door = recording.stream("site1/door")
    info = door.info()
    assert (info.frames, info.segments, info.start_ns) == (20, 2, T0)
    assert [f.message.header.seq for f in door.frames(T0 + 12 * period)] == list(range(12, 20))
    assert door.frame_at(T0 + 15 * period + 5).message.header.seq == 15
    assert parse_time("1.5").resolve(T0) == T0 + 1_500_000_000
    assert open_stream(folder).stream == "site1/door"
    with pytest.raises(RecordingError, match="several streams"):
        open_stream(tmp_path)
    with pytest.raises(RecordingError, match="no stream 'nope'"):
        recording.stream("nope")
    assert stream_folder(tmp_path, "a/../b") == tmp_path / "a" / "%.." / "b"


def test_retention_removes_the_oldest_segments_first(tmp_path: Path) -> None:
    period = 10_000_000
    segments = []
    for i in range(6):  # two streams, interleaved in time
        stream = ("cam1", "cam2")[i % 2]
        segments.append(
            write_segment(
                stream_folder(tmp_path, stream), stream, range(i * 5, i * 5 + 5), T0, period
            )
        )
    sizes = [s.stat().st_size + s.with_suffix(".fbidx").stat().st_size for s in segments]
    removed = enforce(tmp_path, Retention(max_bytes=sum(sizes[3:])))
    assert removed == segments[:3]
    assert all(s.exists() for s in segments[3:])
    old = time.time() - 3600
    os.utime(segments[3], (old, old))
    assert enforce(tmp_path, Retention(max_age=60)) == [segments[3]]


@pytest.mark.parametrize(
    ("text", "result", "expected"),
    [
        ("motion.score > 0.02", {"score": 0.5}, True),
        ("motion.score > 0.02", {"score": 0.01}, False),
        ("score >= 0.5 and stream == 'cam1'", {"score": 0.5}, True),
        ('score >= 0.5 and not stream == "cam1"', {"score": 0.5}, False),
        ("(faces.count > 0 or text != '') and seq < 10", {"count": 0, "text": "hi"}, True),
        ("boxes.0.1 == 7", {"boxes": [[1, 7]]}, True),
        ("missing > 1 or missing.deeper == 2", {"score": 3}, False),
        ("score > 'a'", {"score": 3}, False),
        ("flag", {"flag": True}, True),
        ("other.score > 0", {"x": 1}, False),
        ("-1 < score", {"score": 0}, True),
    ],
)
def test_trigger_conditions(text: str, result: dict, expected: bool) -> None:
    subject = Subject(result, stream="cam1", consumer="motion", seq=3)
    assert Condition.parse(text).matches(subject) is expected


@pytest.mark.parametrize(
    "text", ["", "score >", "score > > 1", "(score > 1", "score = 1", "__import__('os')", "a and"]
)
def test_bad_conditions_say_where(text: str) -> None:
    with pytest.raises(ConfigError, match="trigger condition"):
        Condition.parse(text)


def test_the_pre_event_buffer_writes_the_seconds_before_and_closes_when_quiet() -> None:
    gate = EventGate(pre_s=1.0, post_s=5.0)
    second = 1_000_000_000
    for i in range(30):  # 3 s at 10 fps: only the last second stays
        data, header = frame("cam1", i, T0 + i * second // 10)
        assert gate.offer(data, header) == []  # type: ignore[arg-type]
    flushed = gate.trigger("cam1", now=100.0)
    assert [h.seq for _, h in flushed] == list(range(19, 30))
    data, header = frame("cam1", 30, T0 + 3 * second)
    assert gate.offer(data, header) == [(data, header)]  # type: ignore[arg-type]
    assert gate.expire(now=104.0) == []
    assert gate.trigger("cam1", now=104.0) == []  # extends the event
    assert gate.expire(now=109.5) == ["cam1"]
    assert not gate.recording("cam1") and gate.events == 1


def test_export_writes_a_video_every_player_opens_and_a_still(tmp_path: Path) -> None:
    period = 40_000_000  # 25 fps
    folder = stream_folder(tmp_path / "rec", "cam1")
    write_segment(folder, "cam1", range(0, 20), T0, period)
    write_segment(folder, "cam1", range(20, 30), T0, period)
    stream = open_stream(folder)
    for name in ("clip.mp4", "clip.mkv"):
        done = export_video(stream, tmp_path / name, T0 + 5 * period, T0 + 24 * period)
        assert done.frames == 20 and done.fps == pytest.approx(25.0)
        video = cv2.VideoCapture(str(tmp_path / name))
        assert video.isOpened()
        count = 0
        while video.read()[0]:
            count += 1
        video.release()
        assert count == 20, name
    still = export_still(stream, T0 + 7 * period, tmp_path / "still.jpg")
    assert still.read_bytes() == bytes(stream.frame_at(T0 + 7 * period).message.payload)
    png = cv2.imread(str(export_still(stream, T0, tmp_path / "still.png")))
    assert isinstance(png, np.ndarray) and png.shape == (24, 32, 3)
    with pytest.raises(ConfigError, match=r"\.mp4"):
        export_video(stream, tmp_path / "clip.gif")
