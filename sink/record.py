"""ResultRecord: one stored result, and the plain JSON its result map is kept as.

What the sink stores for each result message: the message's fields plus when the sink
received it, with the processor's map reduced to plain JSON types (:func:`json_safe`), so
every store (SQLite, JSON Lines) and every reader sees the same values.
"""

from __future__ import annotations

import base64
import json
import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from framebroker.errors import ProtocolError
from framebroker.protocol import ResultMessage

INT64_MAX = (1 << 63) - 1
MAX_RESULT_DEPTH = 64


@dataclass(frozen=True, slots=True)
class ResultRecord:
    """One stored result: the result message plus when the sink received it."""

    received_ns: int
    consumer: str
    stream: str
    session: int
    seq: int
    t_capture: int
    t_start: int
    duration_ns: int
    result: Mapping[str, Any]
    id: int | None = None  # assigned by the store (SQLite row id, JSON Lines line number)

    @property
    def age_ns(self) -> int:
        """How old the frame was when its processor started on it."""
        return self.t_start - self.t_capture

    @classmethod
    def from_message(cls, msg: ResultMessage, received_ns: int) -> ResultRecord:
        """A storable record; ProtocolError for numbers SQLite cannot hold or odd results."""
        for name in ("session", "seq", "t_capture", "t_start", "duration_ns"):
            if getattr(msg, name) > INT64_MAX:
                raise ProtocolError(f"result field {name!r} exceeds 2**63-1", kind="unstorable")
        return cls(
            received_ns=received_ns,
            consumer=msg.consumer,
            stream=msg.stream,
            session=msg.session,
            seq=msg.seq,
            t_capture=msg.t_capture,
            t_start=msg.t_start,
            duration_ns=msg.duration_ns,
            result=json_safe(msg.result),
        )

    def to_map(self) -> dict[str, Any]:
        """The record as a JSON-ready map (the JSON Lines and ``results --json`` format)."""
        out: dict[str, Any] = {} if self.id is None else {"id": self.id}
        out.update(
            received_ns=self.received_ns,
            consumer=self.consumer,
            stream=self.stream,
            session=self.session,
            seq=self.seq,
            t_capture=self.t_capture,
            t_start=self.t_start,
            duration_ns=self.duration_ns,
            age_ns=self.age_ns,
            result=dict(self.result),
        )
        return out


def json_safe(value: Any, depth: int = 0) -> Any:
    """Plain JSON types from a decoded msgpack value.

    Bytes become base64 text, non-finite floats null, non-string keys text. Raises
    ProtocolError for nesting deeper than MAX_RESULT_DEPTH.
    """
    if depth > MAX_RESULT_DEPTH:
        raise ProtocolError(
            f"result map nested deeper than {MAX_RESULT_DEPTH} levels", kind="unstorable"
        )
    # What msgpack decodes to, by exact type first: once a result, for every result the
    # sink receives (4.3 -> 1.4 us for a small map). Subclasses take the general path.
    kind = type(value)
    if kind is str or kind is int or value is None or kind is bool:
        return value
    if kind is dict:
        return {
            (k if type(k) is str else _key(k)): json_safe(v, depth + 1) for k, v in value.items()
        }
    if kind is list:
        return [json_safe(v, depth + 1) for v in value]
    if kind is float:
        return value if math.isfinite(value) else None
    if isinstance(value, bool | int | str):
        return value
    if isinstance(value, float):
        return value if math.isfinite(value) else None
    if isinstance(value, bytes | bytearray | memoryview):
        return base64.b64encode(bytes(value)).decode("ascii")
    if isinstance(value, Mapping):
        return {_key(k): json_safe(v, depth + 1) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [json_safe(v, depth + 1) for v in value]
    return str(value)


def _key(key: Any) -> str:
    if isinstance(key, bytes):
        return key.decode("utf-8", errors="replace")
    return str(key)


_ENCODE = json.JSONEncoder(separators=(",", ":"), ensure_ascii=False, default=str).encode


def dumps(value: Any) -> str:
    """Compact JSON text for a stored result map (one encoder, not one a call)."""
    return _ENCODE(value)
