"""SinkSet: one DEALER connected to every sink of a set, kept in step with DNS.

Results go to a sink set through ONE DEALER socket connected to each sink's acknowledged
results port: libzmq hands each message to the next live connection (round robin), and
each sink acknowledges what it committed on the same connection. The socket has
``ZMQ_IMMEDIATE``, so nothing is queued for a sink that is not connected: a send with no
live sink at all fails at once and the result stays in the
:class:`~.results.AckedSender`'s spool. When a sink dies (``kill -9``: its connection
closes; a vanished host: the ZMTP heartbeat times out), whatever it had not acknowledged
is resent after ``RESEND_S`` and goes to another sink; every sink stores a result at most
once and a shared database (PostgreSQL) keeps one row per result, so nothing is lost and
nothing doubled.

The set is a list of hosts or a DNS name with one address per replica, the same
:class:`framebroker.endpoints.EndpointSet` as a broker set's; it is resolved again every
``REFRESH_S`` from the sending thread and the socket connected to new sinks and
disconnected from gone ones (:class:`framebroker.endpoints.Connections`).
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from framebroker.endpoints import Connections, EndpointSet, host_endpoints

log = logging.getLogger("framebroker.consumer")

REFRESH_S = 5.0  # resolve the sink set's names again this often


class SinkSet:
    """Keeps ``sock`` connected to every endpoint of ``endpoints``; owns no socket."""

    def __init__(
        self, sock: zmq.Socket[Any], endpoints: EndpointSet, refresh_s: float = REFRESH_S
    ) -> None:
        self._endpoints = endpoints
        self._connections = Connections(sock, endpoints)
        self._refresh_s = refresh_s
        self._next = 0.0

    @property
    def connected(self) -> tuple[str, ...]:
        """The endpoints the socket is connected to now."""
        return self._connections.connected

    def describe(self) -> str:
        return f"the sink set {self._endpoints.spec}"

    def refresh(self) -> None:
        """Resolve again; connect to new sinks, disconnect from gone ones."""
        self._next = time.monotonic() + self._refresh_s
        before = self.connected
        self._endpoints.resolve()
        self._connections.sync()
        added = [e for e in self.connected if e not in before]
        removed = [e for e in before if e not in self.connected]
        if added or removed:
            log.info(
                "sink set %s: now %s (+%d -%d)",
                self._endpoints.spec,
                ", ".join(self.connected) or "no sink",
                len(added),
                len(removed),
            )

    def maybe_refresh(self) -> None:
        """:meth:`refresh` when ``REFRESH_S`` has passed (cheap otherwise)."""
        if time.monotonic() >= self._next:
            self.refresh()


def make_sink_set(sock: zmq.Socket[Any], spec: str, default_port: int) -> SinkSet:
    """Prepare ``sock`` (a DEALER, not yet connected) for a sink set and connect it."""
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sinks = SinkSet(sock, EndpointSet(host_endpoints(spec, default_port), every=0))
    sinks.refresh()
    return sinks
