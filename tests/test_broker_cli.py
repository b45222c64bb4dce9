"""`framebroker broker` and `framebroker streams` run as users run them (subprocesses)."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time

import pytest
import zmq

from framebroker import control
from framebroker.broker.tables import format_age, format_table, stream_row
from framebroker.cli import EXIT_ERROR, EXIT_INTERRUPTED, EXIT_OK, EXIT_USAGE, main
from framebroker.errors import TransportError
from framebroker.protocol import FrameHeader, encode_frame


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def framebroker(*args: str) -> list[str]:
    return [sys.executable, "-m", "framebroker", *args]


def cli_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("FRAMEBROKER_")}
    env["FRAMEBROKER_LOG_LEVEL"] = "WARNING"
    return env


def run_cli(*args: str, timeout: float = 20.0) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        framebroker(*args), capture_output=True, text=True, timeout=timeout, env=cli_env()
    )


def frame(seq: int) -> bytes:
    now = time.time_ns()
    header = FrameHeader(
        stream="yard/cam1",
        session=1,
        seq=seq,
        t_capture=now,
        t_publish=now,
        encoding="raw",
        shape=(4, 6),
        dtype="uint8",
        pixfmt="gray8",
    )
    return encode_frame(header, bytes(24))


class BrokerProcess:
    def __init__(self) -> None:
        self.ingest, self.publish, self.control = (
            f"tcp://127.0.0.1:{free_port()}" for _ in range(3)
        )
        self.proc = subprocess.Popen(
            framebroker(
                "broker",
                "--ingest",
                self.ingest,
                "--publish",
                self.publish,
                "--control",
                self.control,
                "--log-stats",
                "0",
            ),
            env=cli_env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )

    def wait_ready(self, timeout: float = 20.0) -> None:
        deadline = time.monotonic() + timeout
        while True:
            assert self.proc.poll() is None, self.proc.communicate()
            try:
                control.request(self.control, "ping", timeout=0.5)
                return
            except TransportError:
                assert time.monotonic() < deadline, "broker did not answer ping"

    def stop(self) -> None:
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.communicate(timeout=10)


@pytest.fixture
def broker_process():
    proc = BrokerProcess()
    try:
        proc.wait_ready()
        yield proc
    finally:
        proc.stop()


def test_streams_prints_the_table_and_json(broker_process):
    ctx = zmq.Context()
    pub = ctx.socket(zmq.PUB)
    try:
        pub.connect(broker_process.ingest)
        seq = 0
        while not control.request(broker_process.control, "streams")["streams"]:
            pub.send(frame(seq))
            seq += 1
            assert seq < 500
            time.sleep(0.02)
    finally:
        pub.close(linger=0)
        ctx.term()

    result = run_cli("streams", "--control", broker_process.control, "--stats")
    assert result.returncode == EXIT_OK, result.stderr
    lines = result.stdout.splitlines()
    assert lines[0].split() == ["STREAM", "STATE", "SIZE", "ENCODING", "FPS", "FRAMES", "MB", "AGE"]
    row = lines[1].split()
    assert row[:4] == ["yard/cam1", "live", "6x4", "raw/gray8"]
    assert "frames_in" in result.stdout and "broker totals" in result.stdout

    result = run_cli("streams", "--control", broker_process.control, "--json")
    assert result.returncode == EXIT_OK, result.stderr
    reply = json.loads(result.stdout)
    assert reply["ok"] is True
    assert reply["streams"][0]["stream"] == "yard/cam1"
    assert reply["streams"][0]["shape"] == [4, 6]


def test_streams_without_a_broker_exits_1_with_a_clear_message():
    endpoint = f"tcp://127.0.0.1:{free_port()}"
    result = run_cli("streams", "--control", endpoint, "--timeout", "0.3")
    assert result.returncode == EXIT_ERROR
    assert "no reply from broker control port" in result.stderr
    assert endpoint in result.stderr


@pytest.mark.parametrize(
    ("sig", "code"), [(signal.SIGTERM, EXIT_OK), (signal.SIGINT, EXIT_INTERRUPTED)]
)
def test_signal_stops_the_broker_cleanly(broker_process, sig, code):
    broker_process.proc.send_signal(sig)
    assert broker_process.proc.wait(timeout=10) == code
    _, stderr = broker_process.proc.communicate(timeout=10)
    assert "Traceback" not in stderr


def test_bad_broker_config_is_a_usage_error(capsys):
    assert main(["broker", "--stale-after", "5", "--forget-after", "1"]) == EXIT_USAGE
    assert "forget_after" in capsys.readouterr().err


def test_table_formatting():
    row = stream_row(
        {
            "stream": "a",
            "state": "stale",
            "shape": [1080, 1920, 3],
            "encoding": "jpeg",
            "pixfmt": "bgr24",
            "fps": 29.97,
            "frames": 12,
            "bytes": 3_500_000,
            "age_s": 75.0,
        }
    )
    assert row == ("a", "stale", "1920x1080", "jpeg/bgr24", "30.0", "12", "3.5", "1m15s")
    assert format_age(2.25) == "2.2s" and format_age(7300) == "2h01m"
    table = format_table([row]).splitlines()
    assert len(table) == 2 and table[1].startswith("a ")
