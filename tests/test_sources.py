"""Frame sources, SOURCE parsing, backoff and the grab thread (real OpenCV, no camera)."""

from __future__ import annotations

import contextlib
import logging
import os
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import cv2
import numpy as np
import pytest

from framebroker.errors import ConfigError, SourceError
from framebroker.producers import (
    Backoff,
    CaptureSource,
    FrameSource,
    Grabbed,
    Grabber,
    GrabberState,
    TestPatternSource,
    default_stream_name,
    make_source,
    open_source,
    parse_source,
)
from framebroker.producers.capture import FFMPEG_OPTIONS_ENV
from framebroker.testing import wait_until

VIDEO_FRAMES = 12
VIDEO_FPS = 20.0
WAIT_S = 10.0  # generous upper bound for anything to happen on a busy machine


# --- fixtures and helpers ------------------------------------------------------------


@pytest.fixture
def video_file(tmp_path):
    """A real MJPG/AVI file: VIDEO_FRAMES frames of 64x48, frame i filled with i * 20."""
    path = tmp_path / "clip.avi"
    writer = cv2.VideoWriter(str(path), cv2.VideoWriter_fourcc(*"MJPG"), VIDEO_FPS, (64, 48))
    assert writer.isOpened()
    for i in range(VIDEO_FRAMES):
        writer.write(np.full((48, 64, 3), i * 20, np.uint8))
    writer.release()
    return path


@pytest.fixture
def grabbers():
    made: list[Grabber] = []

    def make(factory, **kwargs) -> Grabber:
        grabber = Grabber(factory, **kwargs)
        made.append(grabber)
        grabber.start()
        return grabber

    yield make
    for grabber in made:
        grabber.close()
        assert grabber.finished


def closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def collect(grabber: Grabber, count: int) -> list[Grabbed]:
    """The next ``count`` distinct frames the grabber offers (newest at each moment)."""
    frames: list[Grabbed] = []
    last = 0
    deadline = time.monotonic() + WAIT_S
    while len(frames) < count and time.monotonic() < deadline:
        frame = grabber.wait_newer(last, 0.1)
        if frame is not None:
            frames.append(frame)
            last = frame.index
        elif grabber.finished:
            break
    return frames


class Plan:
    """A factory of fake sources following a script shared across reopens."""

    def __init__(self, *, fail_opens=0, frames_per_open=None, stall_after=None, crash=False):
        self.fail_opens = fail_opens
        self.frames_per_open = frames_per_open
        self.stall_after = stall_after
        self.crash = crash
        self.opens = 0
        self.closes = 0
        self.release = threading.Event()  # lets a stalled read return at teardown

    def __call__(self) -> FrameSource:
        return FakeSource(self)


class FakeSource(FrameSource):
    description = "fake camera"

    def __init__(self, plan: Plan) -> None:
        self.plan = plan
        self.instance = 0
        self.reads = 0

    @property
    def pace_fps(self) -> float:
        return 200.0

    def open(self) -> None:
        self.plan.opens += 1
        self.instance = self.plan.opens
        if self.plan.opens <= self.plan.fail_opens:
            raise SourceError("fake camera refused the connection")

    def read(self) -> np.ndarray | None:
        self.reads += 1
        plan = self.plan
        if plan.crash and self.instance == 1:
            raise RuntimeError("bug in a user's source")
        if plan.stall_after is not None and self.instance == 1 and self.reads > plan.stall_after:
            plan.release.wait()  # a stalled stream: blocks without failing
            raise SourceError("released")
        if plan.frames_per_open is not None and self.reads > plan.frames_per_open:
            return None
        return np.full((4, 4, 3), self.instance, np.uint8)

    def close(self) -> None:
        self.plan.closes += 1


# --- SOURCE strings ------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "kind", "target"),
    [
        ("0", "device", 0),
        ("2", "device", 2),
        ("/dev/video1", "device", "/dev/video1"),
        ("video.mp4", "file", "video.mp4"),
        ("./test", "file", "./test"),
        ("file:///data/v.avi", "file", "/data/v.avi"),
        ("rtsp://cam7:554/live", "url", "rtsp://cam7:554/live"),
        ("http://cam/mjpg", "url", "http://cam/mjpg"),
        ("https://cam/mjpg", "url", "https://cam/mjpg"),
    ],
)
def test_parse_source_kinds(text, kind, target):
    spec = parse_source(text)
    assert (spec.kind, spec.target) == (kind, target)


@pytest.mark.parametrize(
    ("text", "size", "fps"),
    [
        ("test", (640, 480), 30.0),
        ("test:320x240", (320, 240), 30.0),
        ("test:320x240@12.5", (320, 240), 12.5),
        ("test:@15", (640, 480), 15.0),
    ],
)
def test_parse_test_pattern(text, size, fps):
    spec = parse_source(text)
    assert spec.kind == "test"
    assert (spec.width, spec.height, spec.fps) == (*size, fps)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "empty"),
        ("test:12", "WIDTHxHEIGHT"),
        ("test:0x480", "out of range"),
        ("test:640x480@0", "fps must be"),
        ("test:640x480@fast", "not a number"),
        ("ftp://host/v.mp4", "unsupported URL scheme"),
    ],
)
def test_parse_source_rejects_with_a_clear_message(text, message):
    with pytest.raises(ConfigError, match=message):
        parse_source(text)


@pytest.mark.parametrize(
    ("text", "stream"),
    [
        ("test:320x240@5", "test"),
        ("0", "cam0"),
        ("/videos/front door.mp4", "front_door"),
        ("rtsp://user:pw@cam7:554/live/main", "cam7/live/main"),
        ("http://10.0.0.5/", "10.0.0.5"),
    ],
)
def test_default_stream_name(text, stream):
    assert default_stream_name(text) == stream


# --- the test pattern ----------------------------------------------------------------


def test_pattern_frames_change_and_carry_a_qr_code_of_the_label():
    source = make_source("test:320x240@30", label="site1/cam-7")
    assert isinstance(source, TestPatternSource)
    with source:
        first, second = source.read(), source.read()
        assert source.frame_number == 2
    assert first.shape == (240, 320, 3) and first.dtype == np.uint8
    assert first is not second
    band = 240 // 6
    assert not np.array_equal(first[:band], second[:band]), "frame number text must change"
    assert not np.array_equal(first[band:], second[band:]), "the box must move"
    text, _, _ = cv2.QRCodeDetector().detectAndDecode(second)
    assert text == "site1/cam-7"
    assert source.pace_fps == 30.0


def test_pattern_survives_tiny_sizes():
    with TestPatternSource(8, 6, 10.0) as source:
        assert source.read().shape == (6, 8, 3)


def test_pattern_is_not_collected_as_a_test_and_reads_need_open():
    with pytest.raises(SourceError, match="not open"):
        TestPatternSource(32, 32, 5.0).read()


# --- video files ---------------------------------------------------------------------


def test_video_file_reads_every_frame_then_ends(video_file):
    with open_source(str(video_file)) as source:
        assert isinstance(source, CaptureSource) and not source.live
        assert source.pace_fps == pytest.approx(VIDEO_FPS)
        levels = []
        while (image := source.read()) is not None:
            levels.append(round(float(image.mean()) / 20))
    assert levels == list(range(VIDEO_FRAMES))


def test_video_file_loops_on_request(video_file):
    with open_source(str(video_file), loop=True) as source:
        levels = [round(float(source.read().mean()) / 20) for _ in range(2 * VIDEO_FRAMES + 3)]
    assert levels == [i % VIDEO_FRAMES for i in range(2 * VIDEO_FRAMES + 3)]


def test_grabber_paces_a_file_at_its_native_rate_and_ends_cleanly(video_file, grabbers):
    grabber = grabbers(lambda: make_source(str(video_file)))
    frames = collect(grabber, VIDEO_FRAMES)
    wait_until(lambda: grabber.finished)
    assert grabber.state is GrabberState.ENDED and grabber.error == ""
    assert grabber.frames == VIDEO_FRAMES
    first, last = frames[0], frames[-1]
    # Paced, not read as fast as possible: a lower bound, which a slow machine only helps.
    min_span_ns = (last.index - first.index) / VIDEO_FPS * 0.8 * 1e9
    assert last.t_capture - first.t_capture >= min_span_ns
    assert grabber.wait_newer(last.index, 0.05) is None


def test_grabber_loops_a_file(video_file, grabbers):
    grabber = grabbers(lambda: make_source(str(video_file), loop=True))
    wait_until(lambda: grabber.frames > VIDEO_FRAMES + 2)
    assert grabber.state is GrabberState.STREAMING
    assert not grabber.finished


def test_missing_file_is_a_clear_permanent_error(tmp_path, grabbers):
    missing = tmp_path / "nope.mp4"
    with pytest.raises(SourceError, match="no such video file"):
        open_source(str(missing))
    grabber = grabbers(lambda: make_source(str(missing)))
    wait_until(lambda: grabber.finished)
    assert grabber.state is GrabberState.FAILED
    assert "no such video file" in grabber.error
    assert grabber.failures == 0  # not retried


def test_a_file_that_is_not_a_video(tmp_path):
    path = tmp_path / "notes.mp4"
    path.write_text("not a video")
    with pytest.raises(SourceError, match="not a video"):
        open_source(str(path))


# --- URLs ----------------------------------------------------------------------------


def test_unreachable_rtsp_url_is_a_source_error_and_sets_tcp_transport(monkeypatch):
    monkeypatch.delenv(FFMPEG_OPTIONS_ENV, raising=False)
    url = f"rtsp://viewer:s3cret@127.0.0.1:{closed_port()}/x"
    with pytest.raises(SourceError) as info:
        open_source(url, open_timeout=2.0, read_timeout=2.0)
    message = str(info.value)
    assert "cannot open rtsp://viewer:***@127.0.0.1:" in message
    assert "s3cret" not in message
    assert os.environ[FFMPEG_OPTIONS_ENV] == "rtsp_transport;tcp"


def test_users_ffmpeg_options_are_kept(monkeypatch):
    monkeypatch.setenv(FFMPEG_OPTIONS_ENV, "rtsp_transport;udp")
    with pytest.raises(SourceError):
        open_source(f"rtsp://127.0.0.1:{closed_port()}/x", open_timeout=2.0)
    assert os.environ[FFMPEG_OPTIONS_ENV] == "rtsp_transport;udp"


def test_unreachable_url_is_retried_not_fatal(grabbers):
    url = f"http://127.0.0.1:{closed_port()}/mjpg"
    grabber = grabbers(
        lambda: make_source(url, open_timeout=2.0), backoff=Backoff(initial=0.01, maximum=0.02)
    )
    wait_until(lambda: grabber.failures >= 3)
    assert grabber.state in (GrabberState.RETRYING, GrabberState.OPENING)
    assert not grabber.finished


class MjpegServer:
    """A tiny HTTP MJPEG camera. Its first connection misbehaves after ``first_frames``
    frames: it closes (``stall=False``) or stops sending with the socket open (``stall``).
    Frames of connection n are filled with 40 * n."""

    def __init__(self, first_frames: int | None = None, stall: bool = False) -> None:
        self.first_frames = first_frames
        self.stall = stall
        self.connections = 0
        self.stop = threading.Event()
        server = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                with contextlib.suppress(BrokenPipeError, ConnectionResetError):
                    server.serve(self)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/mjpg"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def serve(self, handler: BaseHTTPRequestHandler) -> None:
        self.connections += 1
        connection = self.connections
        handler.send_response(200)
        handler.send_header("Content-Type", "multipart/x-mixed-replace; boundary=frame")
        handler.end_headers()
        _, jpeg = cv2.imencode(".jpg", np.full((48, 64, 3), 40 * connection, np.uint8))
        part = (
            b"--frame\r\nContent-Type: image/jpeg\r\nContent-Length: %d\r\n\r\n" % len(jpeg)
            + jpeg.tobytes()
            + b"\r\n"
        )
        sent = 0
        while not self.stop.is_set():
            if connection == 1 and self.first_frames is not None and sent >= self.first_frames:
                if self.stall:
                    self.stop.wait()  # the socket stays open, nothing more comes
                return
            handler.wfile.write(part)
            handler.wfile.flush()
            sent += 1
            self.stop.wait(0.05)

    def __enter__(self) -> MjpegServer:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


def level_of(frame: Grabbed | None) -> int:
    return -1 if frame is None else round(float(frame.image.mean()) / 40)


def test_http_mjpeg_stream_is_read_through_ffmpeg(grabbers):
    with MjpegServer() as server:
        grabber = grabbers(lambda: make_source(server.url, open_timeout=5, read_timeout=5))
        frames = collect(grabber, 3)
        assert [f.image.shape for f in frames] == [(48, 64, 3)] * 3
        assert grabber.state is GrabberState.STREAMING


@pytest.mark.parametrize("stall", [False, True], ids=["closed", "stalled"])
def test_a_lost_or_stalled_stream_is_reopened(grabbers, stall):
    # Stalled: FFmpeg's own read timeout is set far away, so only the watchdog can help.
    ffmpeg_timeout = 60 if stall else 1
    with MjpegServer(first_frames=10, stall=stall) as server:
        grabber = grabbers(
            lambda: make_source(server.url, open_timeout=5, read_timeout=ffmpeg_timeout),
            read_timeout=1,
            backoff=Backoff(initial=0.05, maximum=0.1),
        )
        wait_until(lambda: level_of(grabber.latest) == 1)
        wait_until(lambda: level_of(grabber.latest) == 2)  # the second connection
        assert grabber.failures >= 1
        assert grabber.state is GrabberState.STREAMING


# --- backoff and reopening -----------------------------------------------------------


def test_backoff_grows_and_is_capped():
    backoff = Backoff(initial=0.5, maximum=5.0)
    assert [backoff.next_delay() for _ in range(7)] == [0.5, 1, 2, 4, 5, 5, 5]
    assert backoff.attempts == 7
    backoff.reset()
    assert backoff.attempts == 0
    assert backoff.next_delay() == 0.5


def test_backoff_rejects_nonsense():
    with pytest.raises(ConfigError):
        Backoff(initial=2.0, maximum=1.0)
    with pytest.raises(ConfigError):
        Backoff(initial=0.5, maximum=1.0, factor=0.5)


def test_grabber_reopens_after_failures_and_logs_once_per_state(grabbers, caplog):
    caplog.set_level(logging.DEBUG, logger="framebroker.producers.grabber")
    plan = Plan(fail_opens=4)
    grabber = grabbers(plan, backoff=Backoff(initial=0.01, maximum=0.02))
    frames = collect(grabber, 3)
    assert [f.image[0, 0, 0] for f in frames] == [5, 5, 5]  # from the 5th open
    assert grabber.failures == 4
    assert grabber.state is GrabberState.STREAMING
    logged = [
        (r.levelname, r.getMessage())
        for r in caplog.records
        if r.name == "framebroker.producers.grabber" and r.levelno >= logging.INFO
    ]
    assert [level for level, _ in logged] == ["INFO", "WARNING", "INFO"], logged
    assert "opening fake camera" in logged[0][1]
    assert "refused" in logged[1][1] and "retrying" in logged[1][1]
    assert "streaming again after 4 failed attempt(s)" in logged[2][1]


def test_live_source_that_ends_is_reopened(grabbers):
    plan = Plan(frames_per_open=3)
    grabber = grabbers(plan, backoff=Backoff(initial=0.01, maximum=0.02))
    wait_until(lambda: plan.opens >= 3)
    assert grabber.failures >= 2
    assert not grabber.finished
    assert plan.closes >= 2  # each ended source was released


def test_watchdog_reopens_a_stalled_source(grabbers):
    plan = Plan(stall_after=2)
    try:
        grabber = grabbers(plan, read_timeout=0.3, backoff=Backoff(initial=0.01, maximum=0.02))
        wait_until(lambda: grabber.latest is not None and grabber.latest.image[0, 0, 0] == 2)
        assert grabber.failures == 1
        assert grabber.state is GrabberState.STREAMING
    finally:
        plan.release.set()  # lets the abandoned reader thread finish


def test_a_buggy_source_is_logged_with_its_traceback_and_retried(grabbers, caplog):
    caplog.set_level(logging.INFO, logger="framebroker.producers.grabber")
    plan = Plan(crash=True)
    grabber = grabbers(plan, backoff=Backoff(initial=0.01, maximum=0.02))
    wait_until(lambda: grabber.latest is not None and grabber.latest.image[0, 0, 0] == 2)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and warnings[0].exc_info is not None
    assert "RuntimeError: bug in a user's source" in warnings[0].getMessage()


def test_close_stops_the_grabber_and_releases_the_source(grabbers):
    plan = Plan()
    grabber = grabbers(plan)
    wait_until(lambda: grabber.frames > 0)
    grabber.close()
    assert grabber.finished and grabber.state is GrabberState.CLOSED
    assert plan.closes == plan.opens == 1
    frames = grabber.frames
    assert grabber.wait_newer(frames, 0.05) is None
