"""`framebroker view` against a real pipeline of CLI processes (broker, producers, sink,
consumers, viewer) on random ports: its HTTP API, MJPEG and snapshot over plain HTTP, and
in a real browser (Debian's headless chromium driven by Playwright): the stream list, live
frames that change, result overlays, and a screenshot kept as a test artefact."""

from __future__ import annotations

import json
import os
import shutil
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from framebroker import control
from tests.conftest import ROOT, free_port, require, wait_until

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
ARTIFACTS = Path(os.environ.get("FRAMEBROKER_ARTIFACTS", ROOT / "test-artifacts"))
README_SHOT = ROOT / "docs" / "viewer.png"

pytestmark = pytest.mark.slow


class Pipeline:
    def __init__(self, cli, tmp_path: Path) -> None:
        names = ("ingest", "publish", "control", "results", "work")
        ports = {name: free_port() for name in names}
        self.ep = {k: f"tcp://127.0.0.1:{p}" for k, p in ports.items()}
        self.db = tmp_path / "results.sqlite"
        self.http_port = free_port()
        self.url = f"http://127.0.0.1:{self.http_port}/"
        ep = self.ep
        self.broker = cli.start(
            "broker",
            "--ingest",
            ep["ingest"],
            "--publish",
            ep["publish"],
            "--control",
            ep["control"],
            "--work",
            ep["work"],
            "--log-stats",
            "0",
        )
        self.sink = cli.start("sink", "--results", ep["results"], "--db", str(self.db))
        for stream, source in (("site1/cam1", "test:640x480@15"), ("site1/raw", "test:320x240@10")):
            extra = ["--encoding", "raw"] if stream.endswith("raw") else []
            cli.start("produce", source, "--stream", stream, "--ingest", ep["ingest"], *extra)
        for processor in ("motion", "qr"):
            cli.start(
                "consume",
                processor,
                "--streams",
                "site1/",
                "--name",
                processor,
                "--fps",
                "5",
                "--publish",
                ep["publish"],
                "--work",
                ep["work"],
                "--results",
                ep["results"],
            )
        self.viewer = cli.start(
            "view",
            "--publish",
            ep["publish"],
            "--work",
            ep["work"],  # frames by credit (a feed), as the consumers
            "--control",
            ep["control"],
            "--db",
            str(self.db),
            "--http-host",
            "127.0.0.1",
            "--http-port",
            str(self.http_port),
        )

    def get(self, path: str, timeout: float = 5.0) -> bytes:
        with urllib.request.urlopen(self.url + path.lstrip("/"), timeout=timeout) as response:
            return response.read()

    def streams(self) -> dict[str, dict]:
        try:
            body = json.loads(self.get("api/streams"))
        except (urllib.error.URLError, ConnectionError, TimeoutError):
            return {}
        return {s["stream"]: s for s in body["streams"]}

    def ready(self) -> dict[str, dict] | None:
        """both streams live (fps measured) in the viewer, with motion and qr results"""
        streams = self.streams()
        cam = streams.get("site1/cam1", {})
        consumers = {r["consumer"] for r in cam.get("results", [])}
        raw = streams.get("site1/raw", {})
        live = all(s.get("state") == "live" and s.get("viewer_frames", 0) > 0 for s in (cam, raw))
        measured = all(s.get("fps", -1) > 0 for s in (cam, raw))  # -1 until the broker knows
        return streams if live and measured and {"motion", "qr"} <= consumers else None


@pytest.fixture
def pipeline(cli, tmp_path):
    pipe = Pipeline(cli, tmp_path)
    try:
        wait_until(pipe.ready, timeout=40)
    except BaseException:
        for proc in cli.procs:
            print(cli.output(proc)[-2000:])
        raise
    return pipe


def test_viewer_lists_streams_serves_snapshots_and_mjpeg(pipeline):
    # the viewer and both consumers take their frames by credit: three feeds
    wait_until(lambda: control.request(pipeline.ep["control"], "stats")["feeds"] == 3, timeout=10)
    streams = pipeline.ready()
    assert streams is not None
    cam = streams["site1/cam1"]
    assert cam["shape"][:2] == [480, 640] and cam["encoding"] == "jpeg"
    assert cam["fps"] > 0 and 0 <= cam["frame_age_s"] < 5
    qr = next(r for r in cam["results"] if r["consumer"] == "qr")["result"]
    assert qr["codes"][0]["text"] == "site1/cam1" and len(qr["codes"][0]["corners"]) == 4
    assert streams["site1/raw"]["encoding"] == "raw"

    # raw frames are JPEG-encoded for the browser
    for stream in ("site1/cam1", "site1/raw"):
        assert pipeline.get(f"snapshot.jpg?stream={stream}")[:2] == b"\xff\xd8"

    # MJPEG: successive parts are JPEGs of newer frames
    request = urllib.request.urlopen(pipeline.url + "stream.mjpg?stream=site1/cam1", timeout=5)
    with request as response:
        assert response.headers["Content-Type"].startswith("multipart/x-mixed-replace")
        parts: list[bytes] = []
        buffer = b""
        while len(parts) < 3:
            buffer += response.read1(65536)
            while b"\r\n\r\n" in buffer:
                head, rest = buffer.split(b"\r\n\r\n", 1)
                length = int(head.split(b"Content-Length: ")[1].split(b"\r\n")[0])
                if len(rest) < length + 2:
                    break
                parts.append(rest[:length])
                buffer = rest[length + 2 :]
    assert all(p[:2] == b"\xff\xd8" for p in parts)
    assert len(set(parts)) == len(parts)  # the test pattern changes every frame


def test_viewer_in_headless_chromium(pipeline):
    require(CHROMIUM.exists(), "Debian's chromium (/usr/bin/chromium)")
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        require(False, "playwright from PyPI (the test extra)")
    ARTIFACTS.mkdir(parents=True, exist_ok=True)
    started = time.monotonic()
    with sync_playwright() as pw:
        browser = pw.chromium.launch_persistent_context(
            pipeline.db.parent / "chromium-profile",  # a fresh user-data dir
            executable_path=str(CHROMIUM),
            args=CHROMIUM_FLAGS,
            headless=True,
            viewport={"width": 1100, "height": 900},
        )
        try:
            page = browser.new_page()
            page.goto(pipeline.url)
            # the stream list
            page.wait_for_selector('#streams tr[data-stream="site1/raw"]', timeout=15_000)
            rows = page.locator("#streams tbody tr")
            names = sorted(rows.nth(i).get_attribute("data-stream") for i in range(rows.count()))
            assert names == ["site1/cam1", "site1/raw"]
            row = page.locator('#streams tr[data-stream="site1/cam1"]')
            text = row.inner_text()
            assert "640x480" in text and "jpeg" in text and "live" in text
            assert "qr:" in text and "motion:" in text
            # live frames on every tile: the frame counter and the pixels change
            canvas = page.locator('figure[data-stream="site1/cam1"] canvas')
            wait_until(lambda: int(canvas.get_attribute("data-frames") or 0) >= 3, timeout=15)
            first = canvas.evaluate("c => c.toDataURL('image/png')")
            seq = int(canvas.get_attribute("data-seq") or 0)
            wait_until(lambda: int(canvas.get_attribute("data-seq") or 0) > seq + 2, timeout=15)
            assert canvas.evaluate("c => c.toDataURL('image/png')") != first
            assert canvas.evaluate("c => [c.width, c.height]") == [640, 480]
            raw = page.locator('figure[data-stream="site1/raw"] canvas')
            wait_until(lambda: int(raw.get_attribute("data-frames") or 0) >= 3, timeout=15)
            time.sleep(1.0)  # a moment for the overlays of the newest results
            page.screenshot(path=str(ARTIFACTS / "viewer-index.png"), full_page=True)

            # the per-stream page
            view = browser.new_page()
            view.set_viewport_size({"width": 800, "height": 600})
            view.goto(pipeline.url + "view?stream=site1/cam1")
            live = view.locator("#live")
            wait_until(lambda: int(live.get_attribute("data-frames") or 0) >= 3, timeout=15)
            view.screenshot(path=str(ARTIFACTS / "viewer-stream.png"))
        finally:
            browser.close()
    print(f"browser part: {time.monotonic() - started:.1f}s; screenshots in {ARTIFACTS}")
    if not README_SHOT.exists() or os.environ.get("FRAMEBROKER_UPDATE_SCREENSHOT") == "1":
        shutil.copyfile(ARTIFACTS / "viewer-index.png", README_SHOT)
