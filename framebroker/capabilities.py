"""Which protocol version this build speaks and which optional parts each server offers.

Pure, and the ONE place both are written down. A client that reaches a server's control
port asks ``ping`` and gets ``protocol`` ([1, minor], the version of docs/protocol.md the
server implements) and ``capabilities`` (the names of the optional parts it serves right
now), so it can tell what a server has without trying and failing. Each minor version
adds at least one capability, so the version is derived from the table below: a feature
that changes the wire is one more line here, with the minor version that brings it.

The ``v`` field a sender writes in each message is another thing: it is the version that
defined that message (``[1, 0]`` for frames, results and control; see
:mod:`framebroker.wire`), which any receiver of the same major version accepts.
"""

from __future__ import annotations

from collections.abc import Collection
from dataclasses import dataclass
from typing import Any

from framebroker.wire import PROTOCOL_MAJOR

BROKER = "broker"
SINK = "sink"


@dataclass(frozen=True)
class Capability:
    """An optional part of the protocol: its name on the wire, the minor version that
    added it, and which servers announce it in ``ping``."""

    name: str
    minor: int
    servers: tuple[str, ...]
    summary: str


CAPABILITIES = (
    Capability("acked_results", 1, (SINK,), "acknowledged results: port 5559, results with id"),
    Capability("work_groups", 2, (BROKER,), "work groups: port 5560, the groups control op"),
    Capability("broker_set", 3, (BROKER,), "one of a broker set: liveness pings, placement"),
    Capability("shared_memory", 4, (BROKER,), "descriptors and notices on $shm/ topics"),
    Capability("sink_control", 5, (SINK,), "the sink's control port 5561: ping and stats"),
    Capability("feeds", 6, (BROKER,), "feeds: fan-out by credit, the feed op on port 5560"),
)

PROTOCOL_VERSION = (PROTOCOL_MAJOR, max(c.minor for c in CAPABILITIES))


def capabilities(server: str, *, off: Collection[str] = ()) -> list[str]:
    """The capability names ``server`` announces, sorted; ``off``: parts it has turned off
    (a sink started without its acknowledged results port)."""
    unknown = set(off) - {c.name for c in CAPABILITIES}
    if unknown:
        raise ValueError(f"unknown capabilities: {', '.join(sorted(unknown))}")
    return sorted(c.name for c in CAPABILITIES if server in c.servers and c.name not in off)


def ping_fields(server: str, version: str, *, off: Collection[str] = ()) -> dict[str, Any]:
    """The fields of a ``ping`` reply: who answers, its package and protocol versions and
    what it serves."""
    return {
        "server": server,
        "version": version,
        "protocol": list(PROTOCOL_VERSION),
        "capabilities": capabilities(server, off=off),
    }
