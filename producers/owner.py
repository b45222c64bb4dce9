"""OwnerLink: the producer's PUB socket, connected to the one broker that owns its stream.

With one broker (a set of one) this is exactly the socket producers always had: a PUB with
ZMQ_CONFLATE connected to the ingest endpoint as given. With a broker set, a PUB connected
to several brokers would send every frame to all of them, so the link connects to the
stream's *owner* only: the highest-ranked live broker for the stream
(:func:`framebroker.placement.owner`, rendezvous hashing), liveness told by
:class:`~.liveness.Liveness`. When the owner changes (it stopped answering, a better-ranked
broker came back, DNS changed the set) the socket disconnects from the old owner and
connects to the new one: the stream moves, frames keep their session and seq, and
consumers connected to every broker see no gap but the detection time.

Not thread-safe: one thread calls :meth:`poll` (often: each frame, or every 100 ms).
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq

from framebroker import placement
from framebroker.brokerset import EndpointSet, member_id
from framebroker.link import LinkMonitor
from framebroker.security import ClientSecurity
from framebroker.transport import connect, make_socket

from .liveness import Liveness

log = logging.getLogger("framebroker.producers.owner")
LINK_LOG = logging.getLogger("framebroker.producers.link")  # connects, losses, refusals


class OwnerLink:
    """Publishes ``stream`` to the broker of ``ingest`` (an endpoint or a list) that owns it."""

    def __init__(
        self,
        context: zmq.Context[Any],
        stream: str,
        ingest: str,
        security: ClientSecurity,
        *,
        liveness: Liveness | None = None,
    ) -> None:
        self._context = context
        self.stream = stream
        self._security = security
        self.brokers = EndpointSet(ingest)
        self._liveness = liveness
        self._version = -1
        self.sock: zmq.Socket[Any] | None = None
        self.monitor: LinkMonitor | None = None
        self.endpoint: str | None = None  # the owner now
        self.moves = 0  # times the stream moved to another broker

    def open(self) -> zmq.Socket[Any]:
        """Create the socket and connect it to the stream's owner."""
        sock = make_socket(self._context, zmq.PUB, conflate=True)
        try:
            self._security.secure(sock, "broker")
            self.brokers.start()
            self.sock = sock
            self.poll()
        except BaseException:
            self.close()
            raise
        return sock

    def poll(self) -> None:
        """Follow the set and the brokers' liveness; move the stream if its owner changed."""
        if self.sock is None:
            return
        if self.brokers.version != self._version:
            self._version = self.brokers.version
            if self.brokers.single:
                self._close_liveness()
            elif self._liveness is None:
                self._liveness = Liveness(self._context, self._security)
            if self._liveness is not None:
                self._liveness.follow(self.brokers.members())
        if self._liveness is not None:
            self._liveness.poll()
        self._connect(self._owner())
        if self.monitor is not None:
            self.monitor.poll()

    def _owner(self) -> str:
        members = self.brokers.members()
        if self._liveness is None:
            return members[0]
        by_id = {member_id(e): e for e in members}
        live = {member_id(e) for e in self._liveness.live()}
        best = placement.owner(self.stream, by_id, live)
        assert best is not None
        return by_id[best]

    def _connect(self, endpoint: str) -> None:
        sock = self.sock
        if endpoint == self.endpoint or sock is None:
            return
        old, self.endpoint = self.endpoint, endpoint
        if old is not None:
            with contextlib.suppress(zmq.ZMQError):
                sock.disconnect(old)
            self.moves += 1
            log.warning("stream %r moves from broker %s to %s", self.stream, old, endpoint)
        connect(sock, endpoint)
        if self.monitor is None:
            self.monitor = LinkMonitor(
                sock, endpoint, lost_note="; frames are dropped until it is back", logger=LINK_LOG
            )
        else:
            self.monitor.follow(endpoint)

    def _close_liveness(self) -> None:
        liveness, self._liveness = self._liveness, None
        if liveness is not None:
            liveness.close()

    def close(self) -> None:
        """Close the socket (the newest unsent frame gets its linger); idempotent."""
        self.brokers.close()
        self._close_liveness()
        monitor, self.monitor = self.monitor, None
        if monitor is not None:
            monitor.close()
        sock, self.sock = self.sock, None
        if sock is not None:
            sock.close()
