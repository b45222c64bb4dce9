"""Protocol v1.2, work groups (and v1.6, feeds): what a worker or a credit-based fan-out
consumer sends to the broker's work port.

Pure, like :mod:`framebroker.protocol` (whose stream rules it shares; maps are read with
:mod:`framebroker.wire`): bytes in, typed objects out. The normative description is
``docs/protocol.md``, "Work groups".

A worker (``DEALER``) connects to the broker's work port (``ROUTER``, default 5560) and
sends *work requests*, one-frame msgpack maps::

    {"v": [1, 2], "op": "ready", "group": "detectors", "streams": ["cam1", "site1/"],
     "credit": 1, "received": 41, "name": "gpu-box-1"}

``credit`` is how many frames the worker can take now, counted *after* the ``received``
frames it has got on this connection so far; the broker subtracts the frames it sent
that the worker had not yet received when it wrote the request, so a request may be
repeated (as a heartbeat) without ever granting more than ``credit`` frames in flight.
``{"op": "leave"}`` withdraws the worker. The broker answers only with frame messages
(exactly as on the publish port) or, for a bad request, a control error reply map.

v1.6 adds ``{"op": "feed", "streams": [...], "credit": 4, "received": 41}``: the same
credit, for a *feed*, a fan-out consumer that gets every stream it matches (the newest
frame of each, longest-waiting stream first) but only as many frames as it asked for. It
is a private group of one that nobody else can join, so it shares the group's rules.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

import msgpack

from framebroker.errors import ProtocolError
from framebroker.protocol import subscription_for, validate_stream_id
from framebroker.wire import PROTOCOL_MAJOR, is_uint, str_field, unpack, version_of

VERSION_GROUPS = (PROTOCOL_MAJOR, 2)  # v1.2: work groups
VERSION_FEEDS = (PROTOCOL_MAJOR, 6)  # v1.6: feeds (credit-based fan-out)
WORK_OPS = ("ready", "feed", "leave")
MAX_CREDIT = 16  # frames one worker may have in flight; the broker clamps larger credit
MAX_GROUP_PATTERNS = 64  # stream patterns in one request
GROUP_NAME_PATTERN = re.compile(r"[A-Za-z0-9_.\-]{1,64}\Z")
MAX_WORKER_NAME = 200
# The first byte of a msgpack map (fixmap, map 16, map 32): how a worker tells a broker
# reply from a frame message, whose first byte is a stream id character (0x2d..0x7a).
MAP_FIRST_BYTES = frozenset(range(0x80, 0x90)) | {0xDE, 0xDF}


def validate_group(name: str) -> str:
    """Return ``name`` if it is a valid group name, else raise ProtocolError."""
    if not isinstance(name, str) or not GROUP_NAME_PATTERN.match(name):
        raise ProtocolError(
            f"invalid group name {name!r}: use 1..64 letters, digits and . _ -", kind="invalid"
        )
    return name


@dataclass(frozen=True, slots=True)
class WorkRequest:
    """A worker's ``ready`` (join, ask for frames, heartbeat), a feed's ``feed`` (the same
    for a private fan-out subscription, no group) or ``leave``."""

    op: str  # "ready" | "feed" | "leave"
    group: str = ""
    streams: tuple[str, ...] = ()  # patterns, as a consumer's --streams: cam1, site1/, *
    credit: int = 0
    received: int = 0
    name: str = ""
    version: tuple[int, int] = VERSION_GROUPS

    def prefixes(self) -> tuple[bytes, ...]:
        """The topic prefixes the worker's patterns select (as SUB subscriptions would)."""
        return tuple(subscription_for(p) for p in self.streams)

    @property
    def is_feed(self) -> bool:
        return self.op == "feed"

    def to_map(self) -> dict[str, object]:
        if self.op == "leave":
            return {"v": list(self.version), "op": "leave"}
        group = {} if self.op == "feed" else {"group": self.group}
        return {
            "v": list(self.version),
            "op": self.op,
            **group,
            "streams": list(self.streams),
            "credit": self.credit,
            "received": self.received,
        } | ({"name": self.name} if self.name else {})


def encode_work_request(request: WorkRequest) -> bytes:
    return msgpack.packb(request.to_map(), use_bin_type=True)


def decode_work_request(data: bytes | memoryview) -> WorkRequest:
    """Decode a work request; ProtocolError (kind ``invalid`` or ``version``) if bad."""
    m = unpack(data)
    if not isinstance(m, dict):
        raise ProtocolError(f"work request is a {type(m).__name__}, not a map", data)
    version = version_of(m.get("v"))
    op = m.get("op")
    if op not in WORK_OPS:
        raise ProtocolError(f"unknown work op {op!r}; known: {', '.join(WORK_OPS)}", data)
    if op == "leave":
        return WorkRequest(op="leave", version=version)
    try:
        group = "" if op == "feed" else validate_group(str_field(m, "group"))
        streams = _patterns(m["streams"])
        credit, received = m["credit"], m["received"]
        name = str_field(m, "name") if "name" in m else ""
    except KeyError as exc:
        raise ProtocolError(f"work request lacks required key {exc.args[0]!r}", data) from None
    except ProtocolError as exc:
        raise ProtocolError(exc.reason, data) from None
    if not is_uint(credit) or not is_uint(received):
        raise ProtocolError("work request 'credit' and 'received' must be uint", data)
    if len(name.encode()) > MAX_WORKER_NAME:
        raise ProtocolError(f"worker name longer than {MAX_WORKER_NAME} bytes", data)
    return WorkRequest(
        op=op,
        group=group,
        streams=streams,
        credit=min(credit, MAX_CREDIT),
        received=received,
        name=name,
        version=version,
    )


def _patterns(value: object) -> tuple[str, ...]:
    if not isinstance(value, list) or not 1 <= len(value) <= MAX_GROUP_PATTERNS:
        raise ProtocolError(
            f"work request 'streams' must be an array of 1..{MAX_GROUP_PATTERNS} patterns"
        )
    for pattern in value:
        if not isinstance(pattern, str):
            raise ProtocolError(f"stream pattern must be a string, got {pattern!r}")
        stem = pattern[:-1] if pattern.endswith("*") else pattern
        if stem:
            validate_stream_id(stem)  # raises ProtocolError for a bad pattern
    return tuple(value)


def is_reply(data: bytes | memoryview) -> bool:
    """Whether a message on the work port is a reply map rather than a frame message."""
    return len(data) > 0 and data[0] in MAP_FIRST_BYTES
