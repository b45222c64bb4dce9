"""The three ways a frame gets from a sender to a subscriber, set up the same way each time.

- ``direct``: the sender's PUB binds, subscribers connect: no broker, the one-hop limit.
- ``proxy``: libzmq's C ``zmq.proxy`` XSUB->XPUB in its own process: the limit for a hop.
- ``ours``: ``python -m framebroker broker`` exactly as users run it (stats log on).

``transport`` is ``tcp`` (loopback) or ``ipc`` (Unix domain sockets, same host only).
"""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from benchmarks.procs import Child, ChildError, Children
from framebroker import control
from framebroker.errors import FrameBrokerError

MIDDLES = ("direct", "proxy", "ours")


@dataclass
class Hop:
    kind: str
    transport: str
    sender: dict[str, Any]  # socket args for the sending PUB: {"bind"|"connect": [...]}
    subscribe_to: str  # the endpoint subscribers connect to
    middle: Child | None = None
    control: str | None = None
    work: str | None = None  # ours: where workers of a work group ask for frames

    def cpu_seconds(self) -> float:
        return self.middle.cpu_seconds() if self.middle is not None else 0.0

    def broker_stats(self) -> dict[str, object] | None:
        if self.control is None:
            return None
        try:
            return control.request(self.control, "stats", timeout=2.0)
        except FrameBrokerError:
            return None


def setup(ch: Children, kind: str, transport: str = "tcp") -> Hop:
    """Start the middle (if any) and say where senders and subscribers go."""
    if kind == "direct":
        endpoint = ch.endpoint(transport)
        return Hop(kind, transport, {"bind": [endpoint]}, endpoint)
    ingest, publish = ch.endpoint(transport), ch.endpoint(transport)
    if kind == "proxy":
        child = ch.role("proxy", ingest=ingest, publish=publish)
        child.ready()
        return Hop(kind, transport, {"connect": [ingest]}, publish, child)
    if kind != "ours":
        raise ValueError(f"unknown hop {kind!r}")
    ctl, work = ch.endpoint("tcp"), ch.endpoint(transport)
    child = ch.framebroker(
        "broker",
        *("broker", "--ingest", ingest, "--publish", publish),
        *("--control", ctl, "--work", work),
    )
    wait_for_broker(child, ctl)
    return Hop(kind, transport, {"connect": [ingest]}, publish, child, ctl, work)


def wait_for_broker(child: Child, endpoint: str, timeout: float = 20.0) -> None:
    """Wait until the broker `child` answers a ping on its control `endpoint`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if child.proc.poll() is not None:
            raise ChildError(f"broker exited with {child.proc.returncode}{child._tail()}")
        try:
            if control.request(endpoint, "ping", timeout=0.3).get("ok"):
                return
        except FrameBrokerError:
            pass
    raise ChildError(f"broker did not answer on {endpoint} within {timeout:g}s")
