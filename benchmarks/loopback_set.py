"""A broker set on one machine: ``framebroker broker`` processes on 127.x.y.1, .2, .3 ...

Each broker binds its own loopback address with the default ports, as docs/deployment.md
tells users to run a set on one host; ``x.y`` is random per set, so a benchmark never
meets a test's brokers (tests use 127.15.y.k). Brokers run exactly as users run them;
:meth:`LoopbackSet.kill` is ``kill -9``.
"""

from __future__ import annotations

import os
import secrets
import signal
from typing import Any

from benchmarks.hops import wait_for_broker
from benchmarks.procs import Child, Children
from framebroker import control
from framebroker.errors import FrameBrokerError

PORTS = {"ingest": 5555, "publish": 5556, "control": 5558, "work": 5560}


class LoopbackSet:
    """``size`` broker hosts; :meth:`start` runs a broker on one, :meth:`kill` kills it."""

    def __init__(self, ch: Children, size: int, *extra: str) -> None:
        self.ch = ch
        net = f"127.{150 + secrets.randbelow(50)}.{secrets.randbelow(250) + 1}"
        self.hosts = [f"{net}.{k}" for k in range(1, size + 1)]
        self.extra = extra  # more broker flags
        self.brokers: dict[str, Child] = {}

    def endpoints(self, port: str) -> list[str]:
        return [f"tcp://{host}:{PORTS[port]}" for host in self.hosts]

    @property
    def ingest(self) -> str:
        """What producers are given: the comma-separated ingest endpoints of the set."""
        return ",".join(self.endpoints("ingest"))

    def member(self, host: str) -> str:
        """The member id placement hashes for ``host`` (framebroker.brokerset.member_id)."""
        return f"{host}:{PORTS['ingest']}"

    def start_all(self) -> None:
        for host in self.hosts:
            self.start(host)

    def start(self, host: str) -> Child:
        flags = [f"--{name}=tcp://{host}:{port}" for name, port in PORTS.items()]
        child = self.ch.framebroker(f"broker-{host}", "broker", *flags, *self.extra)
        wait_for_broker(child, f"tcp://{host}:{PORTS['control']}")
        self.brokers[host] = child
        return child

    def kill(self, host: str) -> None:
        """``kill -9`` the broker on ``host`` and reap it."""
        child = self.brokers.pop(host)
        os.kill(child.pid, signal.SIGKILL)
        child.proc.wait(10)

    def cpu_seconds(self) -> dict[str, float]:
        return {host: child.cpu_seconds() for host, child in self.brokers.items()}

    def request(self, host: str, command: str) -> dict[str, Any] | None:
        try:
            return control.request(f"tcp://{host}:{PORTS['control']}", command, timeout=2.0)
        except FrameBrokerError:
            return None

    def live_streams(self, host: str) -> set[str]:
        reply = self.request(host, "streams") or {}
        return {s["stream"] for s in reply.get("streams", []) if s["state"] == "live"}

    def serving(self) -> dict[str, set[str]]:
        """stream -> the hosts of the running brokers on which it is live (as they report)."""
        served: dict[str, set[str]] = {}
        for host in self.brokers:
            for stream in self.live_streams(host):
                served.setdefault(stream, set()).add(host)
        return served

    def placed(self, streams: list[str]) -> dict[str, str] | None:
        """stream -> its one serving host, once every stream is live on exactly one broker."""
        served = self.serving()
        if any(len(served.get(s, ())) != 1 for s in streams):
            return None
        return {s: next(iter(served[s])) for s in streams}
