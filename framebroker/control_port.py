"""A server's control port: one msgpack request in, exactly one reply out.

Shared by the broker (port 5558: ping, streams, stats, groups) and the sink (port 5561:
ping, stats), so both answer the same way. A ``ROUTER`` socket owned by the server's loop
thread. Requests come from ``REQ`` clients (envelope ``[id, b"", request]``) or
``DEALER`` clients (``[id, request]``); the reply goes back with the same envelope. Each
op is answered by a *report*, a function returning the reply's fields; a request that
does not decode, names an op this server does not serve (the sink: streams, groups) or
whose report fails gets an error reply (``ok=false``), never silence. A message of more
than ``MAX_CONTROL_PARTS`` parts, which no client sends, is dropped unanswered.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping
from typing import Any, Protocol

import zmq

from framebroker.control_protocol import (
    MAX_CONTROL_PARTS,
    decode_request,
    encode_error_reply,
    encode_reply,
)
from framebroker.errors import ProtocolError
from framebroker.multipart import recv_parts
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.control")

BATCH = 64  # requests handled per poll before other sockets get a turn

Report = Callable[[], Mapping[str, Any]]


class ControlCounters(Protocol):
    """Where a control port counts: the broker's and the sink's counters both have these."""

    control_requests: int
    control_errors: int  # requests answered with ok=false

    def count_rejected(self, reason: str, n: int = 1) -> None: ...


class ControlTally:
    """:class:`ControlCounters` for a server that has no other counters of this kind."""

    def __init__(self) -> None:
        self.control_requests = 0
        self.control_errors = 0
        self.rejected_by_reason: dict[str, int] = {}

    def count_rejected(self, reason: str, n: int = 1) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + n


class ControlPort:
    """Answers control requests with ``reports[op]()``; counts them in ``counters``."""

    def __init__(
        self,
        reports: Mapping[str, Report],
        counters: ControlCounters,
        rlog: RateLimitedLog,
        server: str = "broker",
    ) -> None:
        self._reports = dict(reports)
        self._counters = counters
        self._rlog = rlog
        self._server = server

    def serve(self, sock: zmq.Socket[Any]) -> None:
        """Answer the requests waiting on the socket."""
        for _ in range(BATCH):
            try:
                parts, total = recv_parts(sock, MAX_CONTROL_PARTS)
            except zmq.Again:
                return
            self._counters.control_requests += 1
            if total > MAX_CONTROL_PARTS:  # no client sends that: drop, do not echo it
                self._counters.count_rejected("control_envelope")
                self._rlog.warning("control_envelope", "dropped a %d-part control message", total)
                continue
            reply = self.answer(parts[-1])
            try:
                sock.send_multipart([*parts[:-1], reply], zmq.NOBLOCK)
            except zmq.ZMQError as exc:  # the client is gone or not reading
                self._rlog.warning("control-send", "control reply not sent: %s", exc)

    def answer(self, body: bytes) -> bytes:
        """The reply to one request body."""
        c = self._counters
        try:
            request = decode_request(body)
            report = self._reports.get(request["op"])
            if report is None:
                raise ProtocolError(
                    f"control op {request['op']!r} is not served by this {self._server}"
                )
            return encode_reply(**report())
        except ProtocolError as exc:
            c.control_errors += 1
            c.count_rejected("control_" + exc.kind)
            self._rlog.warning("control", "bad control request: %s", exc.reason)
            return encode_error_reply(exc.reason)
        except Exception as exc:  # a bug in a report must not take the broker down
            c.control_errors += 1
            log.exception("control request failed")
            return encode_error_reply(f"internal error: {exc}")
