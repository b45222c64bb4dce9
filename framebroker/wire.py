"""What every message of protocol v1 shares: the version numbers and how a map is read.

Pure (no sockets, no OpenCV). Frame headers, results, control requests and replies and
work requests are all msgpack maps with a ``"v": [major, minor]`` field and typed fields;
the three protocol modules (:mod:`framebroker.protocol`, :mod:`framebroker.control_protocol`,
:mod:`framebroker.work_protocol`) read them with these functions, so a bad body raises the
same :class:`~framebroker.errors.ProtocolError` (or VersionError) whichever port it came in on.
"""

from __future__ import annotations

from typing import Any

import msgpack

from framebroker.errors import ProtocolError, VersionError

PROTOCOL_MAJOR = 1
PROTOCOL_MINOR = 0
VERSION = (PROTOCOL_MAJOR, PROTOCOL_MINOR)


def unpack(data: bytes | memoryview) -> Any:
    """Exactly one msgpack object with string map keys; ProtocolError for anything else."""
    try:
        return msgpack.unpackb(data, raw=False, strict_map_key=True)
    except Exception as exc:  # msgpack raises several unrelated types for bad bytes
        raise ProtocolError(f"invalid msgpack: {exc}", data) from None


def version_of(v: Any) -> tuple[int, int]:
    """The ``v`` field as (major, minor); VersionError for another major version."""
    if not (isinstance(v, list) and len(v) == 2 and all(is_uint(x) for x in v)):
        raise ProtocolError(f"missing or malformed protocol version 'v': {v!r}")
    if v[0] != PROTOCOL_MAJOR:
        raise VersionError(
            f"protocol major version {v[0]} is not supported; this build speaks "
            f"{PROTOCOL_MAJOR}.x (minor versions only add fields)"
        )
    return (v[0], v[1])


def is_uint(value: Any) -> bool:
    """A msgpack integer >= 0 (msgpack booleans decode to bool, a subclass of int)."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= 0


def str_field(m: dict[str, Any], key: str) -> str:
    """``m[key]`` if it is a string (KeyError when absent, ProtocolError when not a string)."""
    value = m[key]
    if not isinstance(value, str):
        raise ProtocolError(f"field {key!r} must be a string, got {type(value).__name__}")
    return value


def uint_field(m: dict[str, Any], key: str) -> int:
    """``m[key]`` if it is a non-negative integer (KeyError when absent)."""
    value = m[key]
    if not is_uint(value):
        raise ProtocolError(f"field {key!r} must be a non-negative integer, got {value!r}")
    return value


def choice_field(m: dict[str, Any], key: str, choices: tuple[str, ...]) -> str:
    """``m[key]`` if it is one of ``choices`` (KeyError when absent)."""
    value = str_field(m, key)
    if value not in choices:
        raise ProtocolError(f"field {key!r} is {value!r}; expected one of {', '.join(choices)}")
    return value
