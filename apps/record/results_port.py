"""TriggerPort: results sent straight to the recorder, for ``--trigger`` (``--trigger-results``).

The recorder binds a results port of its own that speaks the sink's protocol, so any
consumer sends it results as it would to a sink (``framebroker consume motion --results
tcp://recorder:5570``), and so can any ZeroMQ client:

- ``ENDPOINT``: PULL, plain results (protocol v1.0, PUSH clients, at-most-once);
- ``ENDPOINT``'s port + 2: ROUTER, acknowledged results (protocol v1.1, DEALER clients,
  a consumer's default): each result is acknowledged as soon as it is read, since the
  recorder keeps no results, only reacts to them.

Results come in with no database in between (no polling of the sink's SQLite, no batch
delay), and a recorder can be triggered by a consumer whose results nobody stores. A
malformed message is counted, logged (rate-limited) and dropped. The port has no CURVE:
bind it to loopback or a trusted network.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from framebroker.config import acked_endpoint
from framebroker.errors import ProtocolError
from framebroker.multipart import recv_parts
from framebroker.protocol import ResultMessage, decode_result, encode_ack, peek_result_id
from framebroker.ratelimit import RateLimitedLog
from framebroker.sink.config import DEFAULT_MAX_MESSAGE_SIZE  # the sink's bound on a result
from framebroker.transport import bind, make_socket

from .condition import Condition, Subject

log = logging.getLogger("framebroker.record")

DRAIN = 1000  # results read per socket per poll at most


class TriggerPort:
    """Binds the results ports above; :meth:`poll` returns the new results that match."""

    def __init__(self, endpoint: str, condition: Condition) -> None:
        self.wanted = endpoint
        self.condition = condition
        self.endpoint = ""  # the real endpoints once bound (a port 0 filled in)
        self.acked_endpoint = ""
        self.received = 0
        self.matched = 0
        self.malformed = 0
        self._pull: zmq.Socket[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self._bad = RateLimitedLog(log, interval=5.0)

    def open(self, context: zmq.Context[Any]) -> None:
        size = DEFAULT_MAX_MESSAGE_SIZE
        pull = make_socket(context, zmq.PULL, linger_ms=0, maxmsgsize=size)
        router = make_socket(context, zmq.ROUTER, linger_ms=200, maxmsgsize=size)
        try:
            self.endpoint = bind(pull, self.wanted)
            self.acked_endpoint = bind(router, acked_endpoint(self.wanted))
        except BaseException:
            pull.close(linger=0)
            router.close(linger=0)
            raise
        self._pull, self._router = pull, router
        log.info("trigger results on %s (acknowledged: %s)", self.endpoint, self.acked_endpoint)

    def poll(self) -> list[ResultMessage]:
        """The matching results received since the last poll; never blocks."""
        found: list[ResultMessage] = []
        for sock, routed in ((self._pull, False), (self._router, True)):
            if sock is not None:
                self._drain(sock, routed, found)
        return found

    def _drain(self, sock: zmq.Socket[Any], routed: bool, found: list[ResultMessage]) -> None:
        want = 2 if routed else 1  # [peer, result] on the ROUTER, [result] on the PULL
        for _ in range(DRAIN):
            try:
                parts, total = recv_parts(sock, want)
            except zmq.Again:
                return
            self.received += 1
            data = parts[-1]
            try:
                if total != want:
                    raise ProtocolError(f"{total} message parts, expected {want}", data)
                result = decode_result(data)
            except ProtocolError as exc:
                self.malformed += 1
                self._bad.warning("malformed", "trigger port: dropped a malformed result: %s", exc)
                result = None
            if routed and total == want:
                delivery = result.id if result is not None else peek_result_id(data)
                if delivery is not None:
                    self._ack(sock, parts[0], delivery)
            if result is not None and self.condition.matches(_subject(result)):
                self.matched += 1
                found.append(result)

    def _ack(self, sock: zmq.Socket[Any], peer: bytes, delivery: int) -> None:
        try:
            sock.send_multipart([peer, encode_ack([delivery])], zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._bad.warning("ack", "trigger port: acknowledgement not sent: %s", exc)

    def close(self) -> None:
        for sock in (self._pull, self._router):
            if sock is not None:
                sock.close()
        self._pull = self._router = None


def _subject(result: ResultMessage) -> Subject:
    return Subject(dict(result.result), result.stream, result.consumer, result.seq)
