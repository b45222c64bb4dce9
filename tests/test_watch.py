"""`framebroker streams --watch`: the rich live table against a real broker and producer."""

from __future__ import annotations

import os
import subprocess
import sys

from tests.conftest import free_port, wait_until

WATCH = (sys.executable, "-m", "framebroker", "streams", "--watch")


def test_streams_watch_draws_the_live_table(cli):
    ingest, control = (f"tcp://127.0.0.1:{free_port()}" for _ in range(2))
    cli.start("broker", "--ingest", ingest, "--publish", "tcp://127.0.0.1:0", "--control", control)
    cli.start("produce", "test:160x120@10", "--stream", "w/cam", "--ingest", ingest)

    def watched() -> str | None:
        """two redraws of the table show the live stream"""
        out = subprocess.run(
            [*WATCH, "--control", control, "--count", "2", "--interval", "0.2"],
            capture_output=True,
            text=True,
            timeout=20,
            env={**os.environ, "COLUMNS": "120", "TERM": "dumb"},
        )
        assert out.returncode == 0, out.stderr
        return out.stdout if "w/cam" in out.stdout and "live" in out.stdout else None

    text = wait_until(watched, timeout=20)
    assert "160x120" in text and "jpeg/bgr24" in text and "subscriptions" in text
