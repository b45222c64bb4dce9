"""Shared test helpers: free ports, CLI processes stopped by PID at teardown, reading a
sink's database (query_db), and framebroker.testing's wait_until for polling."""

from __future__ import annotations

import os
import signal
import socket
import sqlite3
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from framebroker.testing import wait_until  # the one polling helper, for the tests too

ROOT = Path(__file__).resolve().parents[1]
IN_CI = os.environ.get("CI", "").lower() == "true"


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def require(condition: bool, what: str) -> None:
    """Skip on a user's machine, fail in CI, when a system component is missing."""
    if condition:
        return
    if IN_CI:
        pytest.fail(f"CI needs {what}; .ci/run should have installed it")
    pytest.skip(f"needs {what}")


def stop_process(proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
    """SIGTERM, then SIGKILL after ``timeout`` seconds; the exit code."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(5)
    return proc.returncode


class CliProcesses:
    """Runs ``python -m framebroker ...`` processes and stops every one by PID."""

    def __init__(self, tmp_path: Path) -> None:
        self.tmp_path = tmp_path
        self.procs: list[subprocess.Popen[str]] = []

    def start(self, *args: str, env: dict[str, str] | None = None) -> subprocess.Popen[str]:
        log = open(self.tmp_path / f"proc-{len(self.procs)}-{args[0]}.log", "w")  # noqa: SIM115
        proc = subprocess.Popen(
            [sys.executable, "-m", "framebroker", *args],
            stdout=log,
            stderr=subprocess.STDOUT,
            text=True,
            cwd=self.tmp_path,
            env={**os.environ, "PYTHONUNBUFFERED": "1", **(env or {})},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def output(self, proc: subprocess.Popen[str]) -> str:
        index = self.procs.index(proc)
        (log,) = self.tmp_path.glob(f"proc-{index}-*.log")
        return log.read_text()

    def stop(self, proc: subprocess.Popen[str], timeout: float = 10.0) -> int:
        return stop_process(proc, timeout)

    def stop_all(self) -> None:
        for proc in reversed(self.procs):
            self.stop(proc)


@pytest.fixture
def cli(tmp_path: Path) -> Iterator[CliProcesses]:
    procs = CliProcesses(tmp_path)
    try:
        yield procs
    finally:
        procs.stop_all()


__all__ = [
    "ROOT",
    "CliProcesses",
    "free_port",
    "query_db",
    "require",
    "stop_process",
    "wait_until",
]


def query_db(db: Path, sql: str, *args: object) -> list[tuple]:
    """Rows of ``sql`` on a sink's SQLite database, read-only; none while the sink has not
    created the file or its table yet (it may be starting: a reader can see an empty file)."""
    if not db.exists():
        return []
    conn = sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=10)
    try:
        return conn.execute(sql, args).fetchall()
    except sqlite3.OperationalError as exc:
        if "no such table" in str(exc):
            return []
        raise
    finally:
        conn.close()
