"""WorkSet: a worker of a work group across a broker set, its credit never split.

A stream's frames go to one broker of the set (its owner), so a worker must ask every
broker; but a worker with credit 1 that asked three brokers could get three frames. So
the credit *rotates*: it is held by one broker at a time (one DEALER and
:class:`~.work_client.WorkClient` per broker, each counting its own ``received``):

- the holder is asked (and reminded every heartbeat) for ``credit`` frames;
- a frame from the holder uses that credit up at the broker itself (credit is absolute,
  frames in flight count against it), so the next request goes to the next broker at once
  with nothing to withdraw: busy workers of a set take frames from every broker in turn;
- a holder with nothing for ``DWELL_S`` seconds has its credit withdrawn (a request with
  credit 0) and is skipped for ``QUIET_S`` seconds unless every broker is quiet.

Each broker still hands each frame to at most one worker of the group, and a frame lives
on one broker only, so the group's at-most-once holds across the set. The one window
left is a withdrawal crossing a frame the holder had just sent: the worker then gets that
frame too (it is processed next; the next request waits for it), see docs/protocol.md.
Runs in the consumer's processing thread, which owns these sockets.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Callable
from typing import Any

import zmq

from framebroker.brokerset import EndpointSet
from framebroker.link import LinkMonitor, connect_watched
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import ClientSecurity
from framebroker.transport import connect, make_socket

from .config import ConsumerConfig
from .frame import Frame
from .stats import ConsumerStats
from .work_client import CREDIT, WorkClient

DWELL_S = 0.25  # a holder with nothing for us this long gives the credit back
QUIET_S = 2.0  # ... and is skipped this long while other brokers have frames


class _Member:
    def __init__(self, sock: zmq.Socket[Any], client: WorkClient) -> None:
        self.sock = sock
        self.client = client
        self.quiet_until = float("-inf")


class WorkSet:
    """``take``/``leave`` of :class:`WorkClient` over every broker of ``endpoints``."""

    def __init__(
        self,
        context: zmq.Context[Any],
        endpoints: EndpointSet,
        security: ClientSecurity,
        *,
        group: str,
        streams: tuple[str, ...],
        name: str,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
    ) -> None:
        self._context = context
        self.endpoints = endpoints
        self._security = security
        self._client_args: dict[str, Any] = dict(
            group=group, streams=streams, name=name, stats=stats, bad_input=bad_input
        )
        self._members: dict[str, _Member] = {}
        self._order: list[str] = []
        self._version = -1
        self._holder: str | None = None
        self._since = 0.0  # when the holder got the credit

    def _sync(self) -> None:
        if self.endpoints.version == self._version:
            return
        self._version = self.endpoints.version
        wanted = self.endpoints.members()
        for endpoint in [e for e in self._members if e not in wanted]:
            member = self._members.pop(endpoint)
            member.client.leave()
            member.sock.close(linger=0)
        for endpoint in wanted:
            if endpoint not in self._members:
                sock = make_socket(self._context, zmq.DEALER, linger_ms=0)
                self._security.secure(sock, "broker")
                connect(sock, endpoint)
                self._members[endpoint] = _Member(sock, WorkClient(sock, **self._client_args))
        self._order = list(wanted)
        if self._holder not in self._members:
            self._holder = None

    def take(self, timeout: float) -> Frame | None:
        """The next frame from any broker of the set, waiting up to ``timeout`` seconds."""
        self._sync()
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            holder = self._holder_now(now)
            holder.client.ask_if_due(now, CREDIT)
            wait = min(deadline, self._since + DWELL_S) - now
            frame = self._receive(max(0.0, wait))
            if frame is not None:
                return frame
            now = time.monotonic()
            if now - self._since >= DWELL_S and len(self._members) > 1:
                holder.client.revoke()
                holder.quiet_until = now + QUIET_S
                self._pass_on(now)
            if now >= deadline:
                return None

    def _holder_now(self, now: float) -> _Member:
        if self._holder is None:
            self._pass_on(now)
        assert self._holder is not None
        return self._members[self._holder]

    def _pass_on(self, now: float) -> None:
        """Give the credit to the next broker in turn, preferring those not quiet."""
        order = self._order
        start = order.index(self._holder) + 1 if self._holder in order else 0
        turn = order[start:] + order[:start]
        awake = [e for e in turn if self._members[e].quiet_until <= now]
        self._holder = (awake or turn)[0]
        self._since = now

    def _receive(self, wait: float) -> Frame | None:
        """A frame from whichever broker sent one (the holder, or one that got a frame out
        before its credit was withdrawn); the credit moves on after a frame."""
        poller = zmq.Poller()
        for member in self._members.values():
            poller.register(member.sock, zmq.POLLIN)
        ready = dict(poller.poll(int(wait * 1000)))
        for endpoint, member in self._members.items():
            if member.sock in ready:
                frame = member.client.receive()
                if frame is None:
                    continue
                member.quiet_until = float("-inf")
                if endpoint == self._holder:
                    self._pass_on(time.monotonic())
                return frame
        return None

    def leave(self) -> None:
        for member in self._members.values():
            member.client.leave()

    def close(self) -> None:
        for member in self._members.values():
            with contextlib.suppress(zmq.ZMQError):
                member.sock.close(linger=0)
        self._members.clear()


def work_client(
    context: zmq.Context[Any],
    config: ConsumerConfig,
    stats: ConsumerStats,
    bad_input: RateLimitedLog,
    new_socket: Callable[..., zmq.Socket[Any]],
    watch: Callable[[LinkMonitor], LinkMonitor] | None = None,
) -> tuple[EndpointSet, WorkClient | WorkSet]:
    """The worker side for ``config.work``: a WorkClient on one DEALER for one broker
    (exactly as before sets), a WorkSet for a set. ``new_socket(kind, **options)`` makes
    (and keeps track of) the one broker's socket; ``watch`` takes (and later closes) the
    monitor that retries a refused handshake on it."""
    assert config.group is not None
    args: dict[str, Any] = dict(
        group=config.group, streams=config.streams, name=config.name, stats=stats,
        bad_input=bad_input,
    )  # fmt: skip
    endpoints = EndpointSet(config.work)
    endpoints.start()
    if endpoints.single:
        dealer = new_socket(zmq.DEALER, linger_ms=0)
        config.security.secure(dealer, "broker")
        link = connect_watched(dealer, endpoints.members()[0])
        if watch is not None:
            watch(link)
        return endpoints, WorkClient(dealer, link=link, **args)
    return endpoints, WorkSet(context, endpoints, config.security, **args)
