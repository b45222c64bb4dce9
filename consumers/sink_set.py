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

The set is a list of hosts or a DNS name with one address per replica
(:class:`framebroker.endpoints.EndpointSet`); it is resolved again every ``REFRESH_S``
and the socket connected to new sinks and disconnected from gone ones.
"""

from __future__ import annotations

import logging
import time
from typing import Any

import zmq

from framebroker.endpoints import EndpointSet
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.consumer")

REFRESH_S = 5.0  # resolve the sink set's names again this often


class SinkSet:
    """Keeps ``sock`` connected to every endpoint of ``endpoints``; owns no socket."""

    def __init__(
        self, sock: zmq.Socket[Any], endpoints: EndpointSet, refresh_s: float = REFRESH_S
    ) -> None:
        self._sock = sock
        self._endpoints = endpoints
        self._refresh_s = refresh_s
        self._next = 0.0
        self._log = RateLimitedLog(log, interval=30.0)

    @property
    def connected(self) -> list[str]:
        """The endpoints the socket is connected to now."""
        return self._endpoints.endpoints

    def describe(self) -> str:
        return f"the sink set {self._endpoints.spec}"

    def refresh(self) -> None:
        """Resolve again; connect to new sinks, disconnect from gone ones."""
        self._next = time.monotonic() + self._refresh_s
        added, removed = self._endpoints.refresh()
        for endpoint in removed:
            try:
                self._sock.disconnect(endpoint)
            except zmq.ZMQError as exc:
                log.debug("sink set: disconnect %s: %s", endpoint, exc)
        for endpoint in added:
            self._sock.connect(endpoint)
        if added or removed:
            log.info(
                "sink set %s: now %s (+%d -%d)",
                self._endpoints.spec,
                ", ".join(self.connected) or "no sink",
                len(added),
                len(removed),
            )
        for host, why in self._endpoints.failures.items():
            self._log.warning("dns:" + host, "sink set: cannot resolve %s: %s", host, why)

    def maybe_refresh(self) -> None:
        """:meth:`refresh` when ``REFRESH_S`` has passed (cheap otherwise)."""
        if time.monotonic() >= self._next:
            self.refresh()


def make_sink_set(sock: zmq.Socket[Any], spec: str, default_port: int) -> SinkSet:
    """Prepare ``sock`` (a DEALER, not yet connected) for a sink set and connect it."""
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sinks = SinkSet(sock, EndpointSet(spec, default_port))
    sinks.refresh()
    return sinks
