"""Camera loss with a real RTSP server (gst-rtsp-server, run by Debian's /usr/bin/python3).

The producer reads ``rtsp://127.0.0.1:P/test`` through a real broker. The server is killed
(SIGKILL: the camera vanishes): the producer keeps running and logs the stream down, the
broker reports it ``stale`` on its control port. The server comes back on the same port:
publishing resumes within 5 s of it listening again, with nothing restarted by hand.
"""

from __future__ import annotations

import signal
import subprocess
import time
from pathlib import Path

import pytest

from framebroker import control
from framebroker.errors import TransportError
from tests.conftest import free_port, require, wait_until

SYSTEM_PYTHON = Path("/usr/bin/python3")
SERVER = Path(__file__).with_name("rtsp_server.py")
RESUME_BOUND_S = 5.0  # issue 7: publishing resumes within 5 s after the server returns
# The camera stays away longer than the broker's --stale-after (3 s), then long enough for
# the producer's backoff to reach its cap (2 s, --max-backoff).
DOWN_S = (6.0, 15.0)


def gst_rtsp_server_available() -> bool:
    if not SYSTEM_PYTHON.exists():
        return False
    probe = (
        "import gi; gi.require_version('GstRtspServer', '1.0'); "
        "from gi.repository import GstRtspServer"
    )
    done = subprocess.run([str(SYSTEM_PYTHON), "-c", probe], capture_output=True, timeout=30)
    return done.returncode == 0


class RtspServer:
    """The server process, started and stopped by PID."""

    def __init__(self, port: int, log: Path) -> None:
        self.port = port
        self.log = log
        self.proc: subprocess.Popen[bytes] | None = None
        self.ready_at = 0.0

    def start(self) -> None:
        self._close_pipe()
        with open(self.log, "ab") as out:
            self.proc = subprocess.Popen(
                [str(SYSTEM_PYTHON), str(SERVER), str(self.port), "320x240@15"],
                stdout=subprocess.PIPE,
                stderr=out,
            )
        assert self.proc.stdout is not None
        line = self.proc.stdout.readline()
        assert line.strip() == b"ready", f"RTSP server did not start: {self.log.read_text()}"
        self.ready_at = time.monotonic()

    def kill(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait(10)

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.kill()
        self._close_pipe()

    def _close_pipe(self) -> None:
        if self.proc is not None and self.proc.stdout is not None:
            self.proc.stdout.close()


def stream_info(control_endpoint: str, name: str) -> dict | None:
    try:
        reply = control.request(control_endpoint, "streams", timeout=1.0)
    except TransportError:
        return None
    return next((s for s in reply["streams"] if s["stream"] == name), None)


@pytest.mark.slow
def test_rtsp_camera_killed_and_back_producer_resumes(cli, tmp_path):
    require(gst_rtsp_server_available(), "gst-rtsp-server for /usr/bin/python3 (python3-gi)")
    ingest, publish, ctl, rtsp = (free_port() for _ in range(4))
    control_endpoint = f"tcp://127.0.0.1:{ctl}"
    server = RtspServer(rtsp, tmp_path / "rtsp-server.log")
    try:
        server.start()
        cli.start(
            *("broker", "--ingest", f"tcp://127.0.0.1:{ingest}"),
            *("--publish", f"tcp://127.0.0.1:{publish}", "--control", control_endpoint),
        )
        producer = cli.start(
            *("produce", f"rtsp://127.0.0.1:{rtsp}/test", "--stream", "cam"),
            *("--open-timeout", "3", "--read-timeout", "3"),
            *("--ingest", f"tcp://127.0.0.1:{ingest}"),
        )

        def live_frames() -> int | None:
            info = stream_info(control_endpoint, "cam")
            return info["frames"] if info and info["state"] == "live" else None

        wait_until(lambda: (live_frames() or 0) >= 20, timeout=30)
        assert stream_info(control_endpoint, "cam")["shape"][:2] == [240, 320]

        recoveries = []
        for down_s in DOWN_S:
            server.kill()
            lost = time.monotonic()

            def stale() -> dict | None:
                """the broker reports the stream stale"""
                info = stream_info(control_endpoint, "cam")
                return info if info and info["state"] == "stale" else None

            before = wait_until(stale, timeout=15)["frames"]
            stale_after = time.monotonic() - lost
            wait_until(lambda: "camera lost" in cli.output(producer), timeout=5)
            assert producer.poll() is None, cli.output(producer)
            time.sleep(max(0.0, down_s - (time.monotonic() - lost)))

            server.start()
            wait_until(lambda b=before: (live_frames() or 0) > b, timeout=30, interval=0.05)
            recoveries.append((time.monotonic() - server.ready_at, stale_after, down_s))
            wait_until(lambda b=before: (live_frames() or 0) >= b + 10, timeout=15)
            assert producer.poll() is None, cli.output(producer)

        log = cli.output(producer)
        assert cli.stop(producer) == 0, log
    finally:
        server.stop()
    rounds = [
        f"stale at the broker after {s:.2f} s; down {d:g} s, publishing again {r:.2f} s "
        "after the server listened"
        for r, s, d in recoveries
    ]
    print("\nRTSP camera killed and back: " + "; ".join(rounds))
    assert "streaming again" in log
    assert all(s < 3.0 + 3.0 for _, s, _ in recoveries), recoveries  # --stale-after 3 s + slack
    assert all(r < RESUME_BOUND_S + 2.0 for r, _, _ in recoveries), recoveries
