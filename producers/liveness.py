"""Liveness: which brokers of a set answer, told by control pings every ``PING_S``.

A PUB socket never says whether anyone listens, and a producer of a set is connected to
one broker only (its stream's owner), so it watches them all another way: a ``DEALER``
per broker on its control port (the ingest port + 3, 5555 -> 5558) sends ``ping`` every
``PING_S`` seconds. A broker is live while it answered within ``DEAD_S``: a killed broker
(connection refused) or a cut link (no answer; ZMTP heartbeats end the connection after 3 s)
is seen as gone within about ``DEAD_S`` + ``PING_S``, and back at its first answer.

``ZMQ_IMMEDIATE`` keeps pings off connections not yet made and a tiny send queue keeps a
cut link from collecting them, so a broker that returns answers one or two, not a backlog.
"""

from __future__ import annotations

import contextlib
import time
from typing import Any

import zmq

from framebroker import control_protocol
from framebroker.errors import ConfigError
from framebroker.security import ClientSecurity
from framebroker.transport import connect, make_socket

PING_S = 0.5  # one ping per broker this often
DEAD_S = 1.5  # no answer for this long: the broker is gone
CONTROL_OFFSET = 3  # the control port from the ingest port: 5555 -> 5558


def control_for(ingest: str) -> str:
    """The control endpoint of the broker whose ingest endpoint is ``ingest``."""
    if not ingest.startswith("tcp://"):
        raise ConfigError(f"a broker set is made of tcp:// endpoints, not {ingest!r}")
    host, port = ingest.rsplit(":", 1)
    return f"{host}:{int(port) + CONTROL_OFFSET}"


class _Pinger:
    def __init__(self, sock: zmq.Socket[Any]) -> None:
        self.sock = sock
        self.answered_at = float("-inf")
        self.pinged_at = float("-inf")


class Liveness:
    """Pings the brokers given to :meth:`follow`; :meth:`live` are those that answer.

    Not thread-safe: use it from one thread (the producer's loop), which calls
    :meth:`poll` at least every ``PING_S``.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        security: ClientSecurity,
        *,
        ping_s: float = PING_S,
        dead_s: float = DEAD_S,
    ) -> None:
        self._context = context
        self._security = security
        self._ping_s = ping_s
        self._dead_s = dead_s
        self._pingers: dict[str, _Pinger] = {}
        self._request = control_protocol.encode_request("ping")

    def follow(self, ingests: tuple[str, ...]) -> None:
        """Ping exactly these brokers (by their ingest endpoints) from now on."""
        for ingest in list(self._pingers):
            if ingest not in ingests:
                self._pingers.pop(ingest).sock.close(linger=0)
        for ingest in ingests:
            if ingest in self._pingers:
                continue
            sock = make_socket(self._context, zmq.DEALER, linger_ms=0, sndhwm=2, rcvhwm=16)
            sock.setsockopt(zmq.IMMEDIATE, 1)
            self._security.secure(sock, "broker")
            connect(sock, control_for(ingest))
            self._pingers[ingest] = _Pinger(sock)

    def poll(self, now: float | None = None) -> None:
        """Read the answers that came, send the pings that are due (never blocks)."""
        now = time.monotonic() if now is None else now
        for pinger in self._pingers.values():
            with contextlib.suppress(zmq.ZMQError):
                while pinger.sock.poll(0):
                    pinger.sock.recv(zmq.NOBLOCK)
                    pinger.answered_at = now
            if now - pinger.pinged_at >= self._ping_s:
                pinger.pinged_at = now
                with contextlib.suppress(zmq.ZMQError):  # EAGAIN: not connected now
                    pinger.sock.send(self._request, zmq.NOBLOCK)

    def live(self, now: float | None = None) -> set[str]:
        """The ingest endpoints of the brokers that answered within ``dead_s``."""
        now = time.monotonic() if now is None else now
        return {i for i, p in self._pingers.items() if now - p.answered_at <= self._dead_s}

    def close(self) -> None:
        for pinger in self._pingers.values():
            pinger.sock.close(linger=0)
        self._pingers.clear()
