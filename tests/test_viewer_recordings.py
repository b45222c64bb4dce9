"""`framebroker view --recordings DIR`: the list of recorded streams and their playback, over
real HTTP and in a real browser (Debian's headless chromium driven by Playwright): the time
slider seeks (by value, by keyboard, by mouse), play/pause follows the recording, and the
frame drawn changes with it. The recording is written with the core's segment writer:
two JPEG segments with a gap between them, and a raw stream whose last segment is still
open (being recorded)."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from framebroker.protocol import encode_frame
from framebroker.recording import stream_folder
from framebroker.segment import SegmentWriter
from framebroker.testing import make_message, synthetic_image, wait_until
from framebroker.viewer import Viewer, ViewerConfig, recordings
from tests.conftest import ROOT, free_port, require
from tests.test_viewer import ARTIFACTS, CHROMIUM, CHROMIUM_FLAGS

MS = 1_000_000
T0 = 1_700_000_000_000_000_000  # the lobby's first frame (ns since the epoch)
PERIOD = 100 * MS  # 10 fps
GAP_START = 3000 * MS  # lobby frames 0..19 at 0.0..1.9 s, frames 20..39 at 3.0..4.9 s
DOCS_SHOT = ROOT / "docs" / "viewer-recording.png"


def lobby_offset(seq: int) -> int:
    return seq * PERIOD if seq < 20 else GAP_START + (seq - 20) * PERIOD


def write_segment(folder: Path, stream: str, seqs: range, offset, close: bool = True, **kw: Any):
    writer = SegmentWriter(folder, T0 + offset(seqs[0]), fsync_interval=1.0)
    for seq in seqs:
        image = synthetic_image(kw.get("width", 320), kw.get("height", 240), seq)
        m = make_message(stream, seq, image=image, t_capture=T0 + offset(seq), **kw.get("m", {}))
        writer.append(encode_frame(m.header, m.payload), m.header)
    if close:
        writer.close()
    else:
        writer.sync()
    return writer


OPEN: dict[str, SegmentWriter] = {}  # the segment still being written, per test


@pytest.fixture
def recording(tmp_path: Path) -> Iterator[Path]:
    root = tmp_path / "rec"
    lobby = stream_folder(root, "lobby")
    write_segment(lobby, "lobby", range(0, 20), lobby_offset, m={"encoding": "jpeg"})
    write_segment(lobby, "lobby", range(20, 40), lobby_offset, m={"encoding": "jpeg"})
    door = stream_folder(root, "site1/door")
    every = {"width": 160, "height": 120}
    write_segment(door, "site1/door", range(0, 10), lambda s: s * 200 * MS, **every)
    still_open = write_segment(door, "site1/door", range(10, 15), lambda s: s * 200 * MS,
                               close=False, **every)  # fmt: skip
    OPEN["site1/door"] = still_open
    try:
        yield root
    finally:
        OPEN.clear()
        still_open.abandon()


@pytest.fixture
def viewer(recording: Path) -> Iterator[Viewer]:
    nowhere = f"tcp://127.0.0.1:{free_port()}"  # no broker: the recordings need none
    config = ViewerConfig(publish=nowhere, control=nowhere, host="127.0.0.1", port=0,
                          recordings=str(recording))  # fmt: skip
    with Viewer(config).run_in_thread() as v:
        yield v


def get(viewer: Viewer, path: str) -> tuple[bytes, Any]:
    with urllib.request.urlopen(viewer.http_endpoint + path.lstrip("/"), timeout=5) as response:
        return response.read(), response.headers


def frame(viewer: Viewer, stream: str, offset_ns: int) -> tuple[bytes, Any]:
    return get(viewer, f"api/recording/frame.jpg?stream={stream}&offset_ns={offset_ns}")


def status_of(viewer: Viewer, path: str) -> int:
    try:
        get(viewer, path)
    except urllib.error.HTTPError as exc:
        return exc.code
    return 200


def test_the_recordings_api_lists_streams_and_serves_the_frame_shown_at_a_time(viewer, monkeypatch):
    body = json.loads(get(viewer, "api/recordings")[0])
    streams = {s["stream"]: s for s in body["streams"]}
    assert list(streams) == ["lobby", "site1/door"]
    lobby = streams["lobby"]
    assert (lobby["start_ns"], lobby["end_ns"]) == (T0, T0 + lobby_offset(39))
    assert (lobby["frames"], lobby["segments"], lobby["duration_ns"]) == (40, 2, lobby_offset(39))
    door = streams["site1/door"]  # its open segment (being recorded) is read too
    assert (door["frames"], door["segments"], door["end_ns"]) == (15, 2, T0 + 14 * 200 * MS)

    cases = {  # offset asked -> (seq shown, the next frame's offset)
        0: (0, PERIOD),
        -5 * MS: (0, PERIOD),  # before the start: the first frame
        1550 * MS: (15, 1600 * MS),
        1900 * MS: (19, GAP_START),  # exactly a frame's time
        2500 * MS: (19, GAP_START),  # in the gap between the segments: the last frame shown
        GAP_START: (20, GAP_START + PERIOD),
        10**12: (39, None),  # after the end: the last frame, no next
    }
    images = {}
    for offset, (seq, nxt) in cases.items():
        data, headers = frame(viewer, "lobby", offset)
        assert data[:2] == b"\xff\xd8"
        assert int(headers["X-Frame-Seq"]) == seq
        assert int(headers["X-Frame-Index"]) == seq
        assert int(headers["X-Frame-Offset-Ns"]) == lobby_offset(seq)
        assert int(headers["X-Frame-T-Capture"]) == T0 + lobby_offset(seq)
        assert headers["X-Frame-Next-Offset-Ns"] == ("" if nxt is None else str(nxt))
        images[seq] = data
    assert len(set(images.values())) == len(images)  # other frames, other pictures

    data, headers = frame(viewer, "site1/door", 2300 * MS)  # raw frames come as JPEG
    assert data[:2] == b"\xff\xd8" and headers["X-Frame-Seq"] == "11"
    assert headers["X-Frame-Encoding"] == "raw" and headers["X-Frame-Shape"] == "120x160x3"

    # the stream being recorded grows: the new frames are read on (not the whole segment)
    monkeypatch.setattr(recordings, "GROWING_REFRESH_S", 0.0)
    writer = OPEN["site1/door"]
    for seq in range(15, 18):
        m = make_message("site1/door", seq, width=160, height=120, t_capture=T0 + seq * 200 * MS)
        writer.append(encode_frame(m.header, m.payload), m.header)
    writer.sync()
    data, headers = frame(viewer, "site1/door", 10**12)
    assert headers["X-Frame-Seq"] == "17" and headers["X-Frame-Index"] == "17"
    door = {s["stream"]: s for s in json.loads(get(viewer, "api/recordings")[0])["streams"]}
    assert door["site1/door"]["frames"] == 18

    assert status_of(viewer, "api/recording/frame.jpg?stream=nope&offset_ns=0") == 404
    assert status_of(viewer, "api/recording/frame.jpg?stream=lobby&offset_ns=1.5") == 400
    assert status_of(viewer, "api/recording/frame.jpg?offset_ns=0") == 400
    for page in ("recordings", "recording?stream=lobby", "playback.js"):
        assert status_of(viewer, page) == 200
    assert json.loads(get(viewer, "api/streams")[0])["recordings"] is True


def test_a_viewer_without_recordings_has_no_recording_pages(tmp_path):
    nowhere = f"tcp://127.0.0.1:{free_port()}"
    config = ViewerConfig(publish=nowhere, control=nowhere, host="127.0.0.1", port=0)
    with Viewer(config).run_in_thread() as v:
        assert status_of(v, "recordings") == 404
        assert status_of(v, "api/recording/frame.jpg?stream=lobby") == 404
        assert json.loads(get(v, "api/streams")[0])["recordings"] is False


@pytest.mark.slow
def test_playback_in_headless_chromium_follows_the_slider_and_plays(viewer):
    require(CHROMIUM.exists(), "Debian's chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright from PyPI (the test extra)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    with sync_playwright() as pw:
        browser = pw.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            page = browser.new_page(viewport={"width": 900, "height": 520})
            page.goto(viewer.http_endpoint + "recordings")
            page.wait_for_selector('#recordings tr[data-stream="site1/door"]', timeout=15_000)
            row = page.locator('#recordings tr[data-stream="lobby"]').inner_text()
            assert "4.900 s" in row and "40" in row
            page.screenshot(path=str(ARTIFACTS / "viewer-recordings.png"))
            page.click('#recordings tr[data-stream="lobby"] a')
            page.wait_for_url("**/recording?stream=lobby")
            check_playback(page)
        finally:
            browser.close()
    if not DOCS_SHOT.exists() or os.environ.get("FRAMEBROKER_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "viewer-recording.png", DOCS_SHOT)


def check_playback(page: Any) -> None:
    canvas = page.locator("#frame")
    slider = page.locator("#slider")

    def seq() -> int:
        return int(canvas.get_attribute("data-seq") or -1)

    wait_until(lambda: seq() == 0, 10, "the first frame drawn")
    assert canvas.evaluate("c => [c.width, c.height]") == [320, 240]
    assert slider.get_attribute("max") == str(lobby_offset(39) // MS)
    first = canvas.evaluate("c => c.toDataURL('image/png')")

    slider.fill(str(1550))  # move the slider: the frame shown at 1.55 s
    wait_until(lambda: seq() == 15, 10, "the frame at 1.55 s")
    assert canvas.evaluate("c => c.toDataURL('image/png')") != first
    assert "1.500 s" in page.locator("#clock").inner_text()
    page.screenshot(path=str(ARTIFACTS / "viewer-recording.png"))
    slider.fill(str(2500))  # in the gap: the last frame before it
    wait_until(lambda: seq() == 19, 10, "the frame before the gap")
    slider.focus()
    page.keyboard.press("End")
    wait_until(lambda: seq() == 39, 10, "the last frame (End key)")
    box = slider.bounding_box()
    assert box is not None
    page.mouse.click(box["x"] + box["width"] * 0.2, box["y"] + box["height"] / 2)
    wait_until(lambda: 3 <= seq() <= 16, 10, "a frame near a fifth of the way (a click)")

    # play from the start at 4x: the frames advance in order up to the end, then it pauses
    page.keyboard.press("Home")
    wait_until(lambda: seq() == 0, 10, "the first frame (Home key)")
    page.select_option("#speed", "4")
    drawn = int(canvas.get_attribute("data-frames") or 0)
    page.click("#play")
    assert canvas.get_attribute("data-state") == "playing"
    seen = [0]
    deadline = time.monotonic() + 20
    while canvas.get_attribute("data-state") == "playing" and time.monotonic() < deadline:
        if seq() != seen[-1]:
            seen.append(seq())
        time.sleep(0.02)
    assert canvas.get_attribute("data-state") == "paused" and seq() == 39
    assert seen == sorted(seen) and len(seen) >= 5, seen  # forward, frame after frame
    assert int(canvas.get_attribute("data-frames") or 0) - drawn >= 5

    # pause in the middle: nothing moves any more
    page.select_option("#speed", "1")
    slider.fill("0")
    wait_until(lambda: seq() == 0, 10, "back to the start")
    page.click("#play")
    wait_until(lambda: seq() >= 3, 10, "playing at 1x")
    page.click("#play")
    assert canvas.get_attribute("data-state") == "paused"
    time.sleep(0.2)  # a frame in flight may still land
    paused_at = seq()
    time.sleep(0.6)
    assert seq() == paused_at < 39
