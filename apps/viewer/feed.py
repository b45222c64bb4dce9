"""ViewerFeed: the viewer's frames by credit (protocol v1.6 feeds), as ``consume`` takes them.

A browser tab behind a slow link, or a viewer on a busy host, must show the newest frame,
not one from a queue. So the viewer asks each broker's work port for frames of its
streams by credit, exactly as a consumer's feed does (:mod:`framebroker.consumers.feed`,
the same :class:`~framebroker.consumers.credit.CreditWindow` per broker, split across a
broker set), on the event loop instead of a thread. ``view --plain-sub`` keeps the SUB
on the publish port (:class:`~.hub.FrameHub` does both).
"""

from __future__ import annotations

import contextlib
import logging
import time
from collections.abc import Callable
from typing import Any

import zmq
import zmq.asyncio

from framebroker.consumers.credit import FeedCredit
from framebroker.control_protocol import refusal_reason
from framebroker.endpoints import EndpointSet
from framebroker.errors import ProtocolError
from framebroker.protocol import FrameMessage, decode_frame, is_system_message
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import ClientSecurity
from framebroker.transport import connect, make_socket
from framebroker.work_protocol import VERSION_FEEDS, WorkRequest, encode_work_request, is_reply

log = logging.getLogger("framebroker.viewer")

HEARTBEAT_S = 1.0  # an idle feed repeats its request this often
POLL_MS = 500  # the longest wait before the broker set and heartbeats are looked at


class _Member(FeedCredit):
    def __init__(self, sock: Any, endpoint: str) -> None:
        super().__init__()
        self.sock = sock
        self.endpoint = endpoint


class ViewerFeed:
    """One DEALER per broker of ``work``; :meth:`run` offers each frame to ``offer``."""

    def __init__(
        self,
        ctx: zmq.asyncio.Context,
        work: str,
        streams: tuple[str, ...],
        security: ClientSecurity,
        offer: Callable[[FrameMessage], None],
        bad: RateLimitedLog,
    ) -> None:
        self._ctx = ctx
        self._endpoints = EndpointSet(work)
        self._streams = streams
        self._security = security
        self._offer = offer
        self._bad = bad
        self._members: dict[str, _Member] = {}
        self._version = -1
        self._poller = zmq.asyncio.Poller()
        self.malformed = 0

    async def run(self) -> None:
        """Receive until cancelled; leaves every broker and closes its sockets at the end."""
        self._endpoints.start()
        try:
            while True:
                self._sync()
                now = time.monotonic()
                for member in self._members.values():
                    if now - member.asked_at >= HEARTBEAT_S:
                        self._ask(member, now)
                for sock, _ in await self._poller.poll(POLL_MS):
                    member = next(m for m in self._members.values() if m.sock is sock)
                    await self._drain(member)
        finally:
            self.close()

    def _sync(self) -> None:
        if self._endpoints.version == self._version:
            return
        self._version = self._endpoints.version
        wanted = self._endpoints.members()
        for endpoint in [e for e in self._members if e not in wanted]:
            member = self._members.pop(endpoint)
            self._poller.unregister(member.sock)
            self._leave(member)
            member.sock.close(linger=0)
        for endpoint in wanted:
            if endpoint not in self._members:
                sock: Any = make_socket(self._ctx, zmq.DEALER, linger_ms=0)
                self._security.secure(sock, "broker")
                connect(sock, endpoint)
                self._poller.register(sock, zmq.POLLIN)
                self._members[endpoint] = _Member(sock, endpoint)
        for member in self._members.values():
            member.share(max(1, len(self._members)))

    async def _drain(self, member: _Member) -> None:
        sock = member.sock
        for _ in range(64):
            if not sock.getsockopt(zmq.EVENTS) & zmq.POLLIN:
                return
            self._handle(member, await sock.recv())

    def _handle(self, member: _Member, data: bytes) -> None:
        if is_reply(data):
            self._bad.warning("refused", "the broker at %s refused the viewer's feed: %s "
                              "(older than protocol 1.6? use --plain-sub)", member.endpoint,
                              refusal_reason(data))  # fmt: skip
            return
        if member.arrived(time.monotonic_ns(), len(data)):
            self._ask(member, time.monotonic())
        if is_system_message(data):
            return
        try:
            message = decode_frame(data)
        except ProtocolError as exc:
            self.malformed += 1
            self._bad.warning("malformed", "viewer: dropped a malformed frame: %s", exc)
            return
        self._offer(message)

    def _ask(self, member: _Member, now: float) -> None:
        received = member.received
        request = WorkRequest(
            op="feed", streams=self._streams, credit=member.ask(now), received=received,
            name="viewer", version=VERSION_FEEDS,
        )  # fmt: skip
        _send_now(member.sock, encode_work_request(request))

    @staticmethod
    def _leave(member: _Member) -> None:
        _send_now(member.sock, encode_work_request(WorkRequest(op="leave")))

    def close(self) -> None:
        for member in self._members.values():
            self._leave(member)
            member.sock.close(linger=0)
        self._members.clear()
        self._endpoints.close()


def _send_now(sock: Any, data: bytes) -> None:
    """Send without waiting (not connected yet: the next heartbeat asks again). An asyncio
    socket reports a NOBLOCK send's failure in a future: read it, so it is not logged."""
    with contextlib.suppress(zmq.ZMQError):
        sent = sock.send(data, zmq.NOBLOCK)
        if hasattr(sent, "done") and sent.done():
            sent.exception()
