"""Child processes of a benchmark run: started by role, marked, measured, stopped by PID.

Every measured program runs in its own process (as it would in production), so the
broker under test never shares a GIL with its load. A child is ``python -m
benchmarks.roles ROLE ARGS`` or ``python -m framebroker ...``; it prints ``READY ...``
when set up and one JSON line (its result) when it ends. ``Children`` owns every child it
starts and stops the ones still running, by PID, when its block ends.

CPU time of a child comes from ``/proc/PID/stat`` (user + system, every thread, including
libzmq's I/O threads), so this module is Linux-only, as is the benchmark.
"""

from __future__ import annotations

import json
import os
import queue
import signal
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path
from types import TracebackType
from typing import Any

_CLK_TCK = os.sysconf("SC_CLK_TCK")
ROOT = Path(__file__).resolve().parents[1]


class ChildError(RuntimeError):
    """A child process failed to start, to answer or to report."""


class Child:
    """One child process; its stdout is read line by line in a thread."""

    def __init__(self, name: str, argv: list[str], log_dir: Path) -> None:
        self.name = name
        self.log_path = log_dir / f"{name}-{time.monotonic_ns()}.log"
        with open(self.log_path, "w") as log:
            self.proc = subprocess.Popen(
                argv,
                stdout=subprocess.PIPE,
                stderr=log,
                text=True,
                cwd=ROOT,
                env={**os.environ, "PYTHONUNBUFFERED": "1"},
            )
        self._lines: queue.Queue[str | None] = queue.Queue()
        self._result: dict[str, Any] | None = None
        self._asked = 0  # marks requested
        self._marked = 0  # marks the child acknowledged
        self._marks_cond = threading.Condition()
        self._reader = threading.Thread(target=self._read, name=f"read-{name}", daemon=True)
        self._reader.start()

    @property
    def pid(self) -> int:
        return self.proc.pid

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            if line.startswith("MARKED "):
                with self._marks_cond:
                    self._marked = int(line.split()[1])
                    self._marks_cond.notify_all()
                continue
            self._lines.put(line.rstrip("\n"))
        self._lines.put(None)

    def ready(self, timeout: float = 20.0) -> str:
        """Wait for the child's ``READY`` line; return what follows it."""
        deadline = time.monotonic() + timeout
        while True:
            left = deadline - time.monotonic()
            try:
                line = self._lines.get(timeout=max(0.01, left))
            except queue.Empty:
                raise ChildError(
                    f"{self.name} not ready within {timeout:g}s{self._tail()}"
                ) from None
            if line is None:
                raise ChildError(f"{self.name} exited before it was ready{self._tail()}")
            if line.startswith("READY"):
                return line[5:].strip()
            if left <= 0:
                raise ChildError(f"{self.name} not ready within {timeout:g}s{self._tail()}")

    def mark(self) -> int:
        """Ask the child to note its counters now (SIGUSR1); returns the mark's number."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGUSR1)
        self._asked += 1
        return self._asked

    def marked(self, number: int, timeout: float = 10.0) -> None:
        """Wait until the child has noted mark ``number`` (a busy child may take a while)."""
        with self._marks_cond:
            if not self._marks_cond.wait_for(lambda: self._marked >= number, timeout):
                raise ChildError(f"{self.name} did not note mark {number} within {timeout:g}s")

    def cpu_seconds(self) -> float:
        """CPU seconds the child's live threads have used so far (ns resolution).

        From ``/proc/PID/task/*/schedstat``; falls back to ``/proc/PID/stat`` (user +
        system, 10 ms ticks) where the kernel has no schedstat.
        """
        pid = self.proc.pid
        if Path("/proc/self/schedstat").exists():
            total = 0
            try:
                tids = os.listdir(f"/proc/{pid}/task")
            except OSError as exc:
                raise ChildError(f"{self.name}: cannot read its CPU time: {exc}") from None
            for tid in tids:
                try:
                    total += int(Path(f"/proc/{pid}/task/{tid}/schedstat").read_text().split()[0])
                except (OSError, ValueError, IndexError):
                    continue  # the thread just ended
            return total / 1e9
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError as exc:
            raise ChildError(f"{self.name}: cannot read its CPU time: {exc}") from None
        return (int(fields[11]) + int(fields[12])) / _CLK_TCK

    def result(self, timeout: float = 30.0) -> dict[str, Any]:
        """Wait for the child to end by itself and return its JSON result line."""
        try:
            self.proc.wait(timeout)
        except subprocess.TimeoutExpired:
            self.stop()
            raise ChildError(f"{self.name} did not finish within {timeout:g}s") from None
        return self._collect()

    def stop(self, timeout: float = 10.0) -> dict[str, Any] | None:
        """SIGTERM (then SIGKILL), wait, and return the JSON result if it printed one."""
        if self.proc.poll() is None:
            self.proc.send_signal(signal.SIGTERM)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        try:
            return self._collect()
        except ChildError:
            return None

    def _collect(self) -> dict[str, Any]:
        if self._result is not None:
            return self._result
        self._reader.join(5)
        last: dict[str, Any] | None = None
        while True:
            try:
                line = self._lines.get_nowait()
            except queue.Empty:
                break
            if line and line.startswith("{"):
                last = json.loads(line)
        if last is None:
            raise ChildError(
                f"{self.name} printed no result (exit {self.proc.returncode}){self._tail()}"
            )
        self._result = last
        return last

    def _tail(self) -> str:
        try:
            text = self.log_path.read_text()[-2000:]
        except OSError:
            return ""
        return f"; its log ends:\n{text}" if text.strip() else ""


def mark_all(*children: Child) -> None:
    """Mark every child at (nearly) the same moment, then wait until each has noted it."""
    numbers = [child.mark() for child in children]
    for child, number in zip(children, numbers, strict=True):
        child.marked(number)


class Children:
    """Starts children and stops every one still running when the block ends."""

    def __init__(self) -> None:
        self._dir = tempfile.TemporaryDirectory(prefix="fb-bench-")
        self.dir = Path(self._dir.name)
        self.children: list[Child] = []
        self._ipc = 0

    def role(self, role: str, name: str | None = None, **args: Any) -> Child:
        """A ``benchmarks.roles`` child running ``role`` with ``args`` (JSON)."""
        argv = [sys.executable, "-m", "benchmarks.roles", role, json.dumps(args)]
        return self._start(name or role, argv)

    def framebroker(self, name: str, *args: str) -> Child:
        """A ``python -m framebroker ...`` child, as users run it."""
        return self._start(name, [sys.executable, "-m", "framebroker", *args])

    def _start(self, name: str, argv: list[str]) -> Child:
        child = Child(name, argv, self.dir)
        self.children.append(child)
        return child

    def endpoint(self, transport: str = "tcp") -> str:
        """A fresh endpoint to bind: a free loopback TCP port or an ipc:// path."""
        if transport == "ipc":
            self._ipc += 1
            return f"ipc://{self.dir}/s{self._ipc}"
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            return f"tcp://127.0.0.1:{s.getsockname()[1]}"

    def stop_all(self) -> None:
        for child in reversed(self.children):
            child.stop()
        self.children.clear()

    def __enter__(self) -> Children:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        try:
            self.stop_all()
        finally:
            self._dir.cleanup()
