"""Supervising ``framebroker`` child processes: start, watch for early death, stop.

Each child is ``python -m framebroker <command> ...`` in its own process group, so a
Ctrl-C in the terminal reaches only the supervisor, which then stops the children itself:
SIGTERM by PID, a grace period, then SIGKILL for the group of any straggler. A child's
stdout and stderr go to a log file, whose tail is shown when it dies.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import signal
import subprocess
import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from framebroker.errors import FrameBrokerError

log = logging.getLogger("framebroker.demo")

_HAVE_WAITID = hasattr(os, "waitid")  # not on macOS: there, no group clean-up after exit


@dataclass(frozen=True)
class ChildSpec:
    """One child: a display name and its ``framebroker`` arguments."""

    name: str
    args: tuple[str, ...]

    @property
    def slug(self) -> str:
        return re.sub(r"[^A-Za-z0-9_.-]+", "-", self.name).strip("-") or "child"


@dataclass
class Child:
    """A started child process and where its output goes."""

    spec: ChildSpec
    process: subprocess.Popen[bytes]
    log_path: Path
    killed: bool = False  # needed SIGKILL to stop

    @property
    def name(self) -> str:
        return self.spec.name

    @property
    def pid(self) -> int:
        return self.process.pid

    @property
    def returncode(self) -> int | None:
        """The exit code once reaped (see reap()), else None."""
        return self.process.returncode

    def has_exited(self) -> bool:
        """Whether the child ended, without reaping it (its PID stays reserved)."""
        if self.process.returncode is not None:
            return True
        if not _HAVE_WAITID:
            return self.process.poll() is not None
        try:
            info = os.waitid(os.P_PID, self.pid, os.WEXITED | os.WNOHANG | os.WNOWAIT)
        except ChildProcessError:  # reaped elsewhere
            self.process.poll()
            return True
        return info is not None

    def reap(self) -> int:
        """Kill what is left of the child's process group, then collect its exit code.

        While the ended child is unreaped its PID, the group's id, cannot be reused, so
        the group kill reaches only the child's own helpers that outlived it.
        """
        if self.process.returncode is None and _HAVE_WAITID:
            _kill_group(self.pid)
        return self.process.wait()

    def log_tail(self, lines: int = 15) -> str:
        """The last ``lines`` lines the child wrote (stdout and stderr)."""
        try:
            text = self.log_path.read_text(encoding="utf-8", errors="replace")
        except OSError as exc:
            return f"(cannot read {self.log_path}: {exc})"
        tail = text.splitlines()[-lines:]
        return "\n".join(tail) if tail else "(no output)"


class Cluster:
    """A set of child processes started and stopped together."""

    def __init__(
        self,
        log_dir: Path,
        *,
        command: Sequence[str] = (sys.executable, "-m", "framebroker"),
        env: Mapping[str, str] | None = None,
    ) -> None:
        self.log_dir = log_dir
        self._command = tuple(command)
        self._env = dict(os.environ if env is None else env)
        self._env.setdefault("PYTHONUNBUFFERED", "1")
        self.children: list[Child] = []

    def start(self, spec: ChildSpec) -> Child:
        """Start one child in its own process group; FrameBrokerError if it cannot start."""
        self.log_dir.mkdir(parents=True, exist_ok=True)
        log_path = self.log_dir / f"{spec.slug}.log"
        with open(log_path, "wb") as out:
            try:
                process = subprocess.Popen(
                    [*self._command, *spec.args],
                    stdin=subprocess.DEVNULL,
                    stdout=out,
                    stderr=subprocess.STDOUT,
                    env=self._env,
                    process_group=0,
                )
            except OSError as exc:
                raise FrameBrokerError(f"cannot start {spec.name}: {exc}") from exc
        child = Child(spec, process, log_path)
        self.children.append(child)
        return child

    def exited(self) -> list[Child]:
        """Children that are no longer running (reaped, so returncode is set)."""
        ended = [c for c in self.children if c.has_exited()]
        for child in ended:
            child.reap()
        return ended

    def stop(self, children: Iterable[Child] | None = None, *, grace: float = 5.0) -> None:
        """SIGTERM each child by PID, wait up to ``grace`` s, SIGKILL the stragglers.

        Afterwards no process of their process groups is left (a child's own helpers
        that outlived it are killed too).
        """
        targets = list(self.children if children is None else children)
        for child in targets:
            if not child.has_exited():
                _signal(child.pid, signal.SIGTERM)
        deadline = time.monotonic() + grace
        for child in targets:
            if not _wait_exit(child, deadline):
                log.warning("%s (pid %d) ignored SIGTERM; killing it", child.name, child.pid)
                child.killed = True
                _kill_group(child.pid)  # alive, so its group id is still its own
                _wait_exit(child, time.monotonic() + 5.0)
            child.reap()

    def stop_all_in_order(self, waves: Sequence[Sequence[Child]], *, grace: float = 5.0) -> None:
        """Stop ``waves`` one after another, then anything not named in them."""
        named: set[int] = set()
        for wave in waves:
            self.stop(wave, grace=grace)
            named.update(c.pid for c in wave)
        self.stop([c for c in self.children if c.pid not in named], grace=grace)


def _wait_exit(child: Child, deadline: float) -> bool:
    while not child.has_exited():
        if time.monotonic() >= deadline:
            return False
        time.sleep(0.02)
    return True


def _signal(pid: int, sig: int) -> None:
    with contextlib.suppress(ProcessLookupError):
        os.kill(pid, sig)


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)
