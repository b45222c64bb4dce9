"""Protocol v1, control: the request and reply maps of the broker's control port.

Pure, like :mod:`framebroker.protocol`: bytes in, typed objects out, no sockets. The
normative description is ``docs/protocol.md``, "Control".

A request is one frame, a msgpack map ``{"v": [1, 0], "op": OP, ...}``; the broker answers
every request with exactly one reply map ``{"v": [1, 0], "ok": true, ...fields}`` or, for a
request it cannot serve, ``{"v": [1, 0], "ok": false, "error": "why"}``. Other ports answer
with the same reply shape: the work port's error replies and the sink's acknowledgements
(:func:`framebroker.protocol.decode_ack`) decode with :func:`decode_reply` too.
"""

from __future__ import annotations

from typing import Any

import msgpack

from framebroker.errors import ProtocolError
from framebroker.wire import VERSION, unpack, version_of

CONTROL_OPS = ("ping", "streams", "stats", "groups")  # "groups": v1.2
# The most ZeroMQ frames a server takes in one control message: the routing id, the
# envelope (REQ: b"", proxies: more) and the request; a message of more goes unanswered.
MAX_CONTROL_PARTS = 8
MAX_CONTROL_SIZE = 64 << 10  # a request, at most (the broker's --max-control-size default)


def encode_request(op: str, **args: Any) -> bytes:
    return msgpack.packb({"v": list(VERSION), "op": op, **args}, use_bin_type=True)


def decode_request(data: bytes | memoryview) -> dict[str, Any]:
    """A control request map; ProtocolError for a bad body or an unknown op."""
    m = unpack(data)
    if not isinstance(m, dict):
        raise ProtocolError(f"control request is a {type(m).__name__}, not a map", data)
    version_of(m.get("v"))
    op = m.get("op")
    if op not in CONTROL_OPS:
        raise ProtocolError(f"unknown control op {op!r}; known: {', '.join(CONTROL_OPS)}", data)
    return m


def encode_reply(**fields: Any) -> bytes:
    return msgpack.packb({"v": list(VERSION), "ok": True, **fields}, use_bin_type=True)


def encode_error_reply(error: str) -> bytes:
    return msgpack.packb({"v": list(VERSION), "ok": False, "error": error}, use_bin_type=True)


def decode_reply(data: bytes | memoryview) -> dict[str, Any]:
    """A reply map with a boolean ``ok`` (and an ``error`` string when it is false)."""
    m = unpack(data)
    if not isinstance(m, dict) or not isinstance(m.get("ok"), bool):
        raise ProtocolError("control reply is not a map with a boolean 'ok'", data)
    version_of(m.get("v"))
    if m["ok"] is False and not isinstance(m.get("error"), str):
        raise ProtocolError("control error reply has no 'error' string", data)
    return m


def refusal_reason(data: bytes | memoryview) -> str:
    """The ``error`` of a refusing reply, or what makes the reply unreadable."""
    try:
        return str(decode_reply(data).get("error", "no reason given"))
    except ProtocolError as exc:
        return f"an unreadable reply ({exc})"
