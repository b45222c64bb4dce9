"""FeedReceiver: the receive thread of a credit-based fan-out consumer (protocol v1.6).

Instead of a SUB socket that takes whatever the broker pushes, a feed is a DEALER on the
broker's work port that asks for frames of its streams by credit::

    {"op": "feed", "streams": [...], "credit": W, "received": R} --> broker work port
    <-- the newest frame of the stream that waited longest (at most W on the way)

Everything after the socket is the SUB consumer's: each frame is decoded and offered to
:class:`~.slots.LatestSlots`, which the processor takes from. Only the supply differs:
frames are sent only while the feed has credit, so a slow link or a slow host never
holds more than the window (:class:`~.credit.CreditWindow`, 1 frame on a slow link, up
to 16 on a fast one) and the frame the processor starts on is at most one transfer plus
one frame period old. The broker serves a feed's streams longest-waiting first, so 16
streams behind one slow link take turns and each stays fresh.

**A broker set.** A stream lives on one broker of the set, so the feed asks every broker
(one DEALER each, as a worker of a set, :mod:`~.work_set`). Each broker's feed has its
own window, measured on its own path, and the set's windows are split: with N brokers
each may hold at most ``1/N`` of the frames and bytes a single broker's window may (but
at least one frame), so the consumer never holds more in flight than one window across
the set. Frames of one session from two brokers (a stream that moved) are ordered by
``(session, seq)`` in the slots, as for a SUB connected to every broker.

**Shared memory.** With ``shm`` (the default) a SUB socket connected to every broker
takes the descriptors of the streams (a few hundred bytes each, the frames themselves are
read from /dev/shm, :mod:`~.resolver`) and the feed asks only for the streams whose
frames must come over the network: the patterns themselves until the broker's beacon
comes, then the streams the broker announces by network notices (or the patterns again
if there are more than a request holds). A feed with no such stream asks for nothing.

The receive thread asks again as soon as half a window is free (on every frame with a
window of 1, right after decoding its header), and every ``HEARTBEAT_S`` while nothing
comes (the broker forgets a feed silent for its ``--worker-timeout``). It sends
``leave`` when it stops, and whenever its network streams become none.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from framebroker.control_protocol import refusal_reason
from framebroker.endpoints import EndpointSet, connect_all
from framebroker.link import LinkMonitor, connect_watched
from framebroker.protocol import TOPIC_END, subscription_for
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import ClientSecurity
from framebroker.transport import connect
from framebroker.work_protocol import (
    MAX_GROUP_PATTERNS,
    VERSION_FEEDS,
    WorkRequest,
    encode_work_request,
    is_reply,
)

from .config import ConsumerConfig
from .credit import CreditWindow, FeedCredit
from .receiver import LINK_CHECK_S, POLL_MS, Receiver
from .slots import LatestSlots
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

HEARTBEAT_S = 1.0  # an idle feed repeats its request this often
BATCH = 64  # messages read from one socket before the others get a turn


class FeedMember(FeedCredit):
    """The feed to one broker: its DEALER, and its credit (window, frames received)."""

    def __init__(self, sock: zmq.Socket[Any], link: LinkMonitor | None, endpoint: str) -> None:
        super().__init__()
        self.sock = sock
        self.link = link
        self.endpoint = endpoint
        self.requests = 0
        self.asked: tuple[str, ...] = ()  # the streams of the last request

    def close(self) -> None:
        if self.link is not None:
            self.link.close()
        self.sock.close(linger=0)


class FeedReceiver(Receiver):
    """Runs in its own thread: ``run(stop)`` until ``stop`` is set. Creates, uses and closes
    its feed sockets (one per broker of ``work``) in that thread; ``sub`` (the descriptor
    SUB of the shared-memory path, or None) is the caller's, used only here while it runs.
    """

    def __init__(
        self,
        context: zmq.Context[Any],
        work: str,
        security: ClientSecurity,
        slots: LatestSlots,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
        *,
        streams: tuple[str, ...],
        name: str,
        sub: zmq.Socket[Any] | None = None,
        tick: Callable[[], None] | None = None,
        link: LinkMonitor | None = None,
    ) -> None:
        shm = sub is not None
        prefixes = tuple(subscription_for(p) for p in streams)
        # until the broker's beacon comes (shared memory), the feed asks for the patterns
        super().__init__(sub, slots, stats, bad_input, tick, link=link, shm=shm, fallback=prefixes)
        self._context = context
        self._work = work
        self._security = security
        self._patterns = tuple(streams)
        self._name = name
        # what the feed asks for: the patterns, or (shared memory) the network streams
        self._wanted: dict[bytes, str] = dict(zip(prefixes, self._patterns, strict=True))
        self.members: dict[str, FeedMember] = {}
        self._endpoints: EndpointSet | None = None
        self._version = -1
        self._poller = zmq.Poller()
        if sub is not None:  # descriptors and the beacon
            self._poller.register(sub, zmq.POLLIN)

    # --- what to ask for ---------------------------------------------------------------

    def _subscribe(self, topic: bytes) -> None:
        """The resolver sends a stream over the network: the feed asks for it."""
        self._wanted[topic] = topic[: -len(TOPIC_END)].decode()

    def _unsubscribe(self, topic: bytes) -> None:
        """A stream (or, once the beacon came, a pattern) is read from shared memory."""
        self._wanted.pop(topic, None)

    def streams(self) -> tuple[str, ...]:
        """The patterns of the next request: () when every stream is read locally; the
        patterns themselves while no stream is (a remote consumer: as without shared
        memory, one request for the streams as the user named them)."""
        if self.resolver is not None and not self.resolver.reads_local:
            return self._patterns
        wanted = tuple(sorted(self._wanted.values()))
        if len(wanted) > MAX_GROUP_PATTERNS:  # more than a request holds: all of them
            return self._patterns
        return wanted

    # --- the thread --------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        resolver = self.resolver
        try:
            self._endpoints = EndpointSet(self._work)
            self._endpoints.start()
            while not stop.is_set():
                if self._tick is not None:
                    self._tick()
                if resolver is not None:
                    resolver.check()
                self._sync()
                self._ask_due(time.monotonic())
                ready = dict(self._poller.poll(POLL_MS))
                if not ready:
                    self._check_links()
                    continue
                for sock in ready:
                    self._drain(sock)
        except zmq.ZMQError as exc:
            if not stop.is_set():
                self.error = exc
                log.error("feed receive failed: %s", exc)
        except BaseException as exc:  # a bug: report it to run() rather than die silently
            self.error = exc
            log.exception("feed receive thread failed")
        finally:
            self.leave()
            for member in self.members.values():
                member.close()
            self.members.clear()
            if self._endpoints is not None:
                self._endpoints.close()
            if resolver is not None:
                resolver.close()

    def _sync(self) -> None:
        """Follow the broker set: a feed socket per member; the windows split across them."""
        endpoints = self._endpoints
        assert endpoints is not None
        if endpoints.version == self._version:
            return
        self._version = endpoints.version
        wanted = endpoints.members()
        for endpoint in [e for e in self.members if e not in wanted]:
            member = self.members.pop(endpoint)
            self._leave(member)
            self._poller.unregister(member.sock)
            member.close()
        for endpoint in wanted:
            if endpoint not in self.members:
                self.members[endpoint] = self._connect(endpoint, single=len(wanted) == 1)
        for member in self.members.values():
            member.share(max(1, len(self.members)))

    def _connect(self, endpoint: str, *, single: bool) -> FeedMember:
        sock = self._context.socket(zmq.DEALER)
        sock.setsockopt(zmq.LINGER, 0)
        self._security.secure(sock, "broker")
        link = None
        if single:
            link = connect_watched(sock, endpoint)  # the monitor first: nothing missed
        else:
            connect(sock, endpoint)
        self._poller.register(sock, zmq.POLLIN)
        return FeedMember(sock, link, endpoint)

    def _drain(self, sock: zmq.Socket[Any]) -> None:
        member = next((m for m in self.members.values() if m.sock is sock), None)
        for _ in range(BATCH):
            try:
                message = sock.recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if member is None:  # the descriptor SUB
                self.handle(message.buffer)
            else:
                self.handle_feed(member, message.buffer)

    def handle_feed(self, member: FeedMember, data: memoryview) -> None:
        """One message from a broker's work port: a frame (ask for more, then offer it) or
        a refusal."""
        if is_reply(data):
            self._refused(member, data)
            return
        frame = self.handle(data)
        now_ns = time.monotonic_ns()
        if frame is None:
            due = member.arrived(now_ns, len(data))
        else:
            delay = frame.t_received - frame.t_capture
            due = member.arrived(now_ns, len(data), frame.stream, delay)
        if due:
            self._ask(member, time.monotonic())

    def _ask_due(self, now: float) -> None:
        """Ask the brokers whose streams changed or whose heartbeat is due."""
        streams = self.streams()
        for member in self.members.values():
            if streams != member.asked:
                if not streams:
                    self._leave(member)
                    continue
                self._ask(member, now)
            elif streams and now - member.asked_at >= HEARTBEAT_S:
                self._ask(member, now)

    def _ask(self, member: FeedMember, now: float) -> None:
        streams = self.streams()
        if not streams:
            return
        received = member.received
        request = WorkRequest(
            op="feed",
            streams=streams,
            credit=member.ask(now),
            received=received,
            name=self._name,
            version=VERSION_FEEDS,
        )
        with contextlib.suppress(zmq.Again):  # not connected yet: the next heartbeat
            member.sock.send(encode_work_request(request), zmq.NOBLOCK)
            member.requests += 1
        member.asked = streams

    def leave(self) -> None:
        """Tell every broker this feed is gone (best effort, never blocks)."""
        for member in self.members.values():
            self._leave(member)

    @staticmethod
    def _leave(member: FeedMember) -> None:
        member.asked = ()
        with contextlib.suppress(zmq.ZMQError):
            member.sock.send(encode_work_request(WorkRequest(op="leave")), zmq.NOBLOCK)

    def _check_links(self) -> None:
        now = time.monotonic()
        if now < self._link_due:
            return
        self._link_due = now + LINK_CHECK_S
        for link in (self._link, *(m.link for m in self.members.values())):
            if link is not None:
                link.poll()

    @property
    def received(self) -> int:
        return sum(m.received for m in self.members.values())

    @property
    def requests(self) -> int:
        return sum(m.requests for m in self.members.values())

    @property
    def window(self) -> CreditWindow | None:
        """The window of the one broker (None before it is connected): for reports."""
        return next(iter(self.members.values())).window if self.members else None

    def _refused(self, member: FeedMember, data: memoryview) -> None:
        self._bad_input.warning(
            "refused",
            "the broker at %s refused feed %s: %s (a broker older than protocol 1.6 does not "
            "serve feeds: upgrade it or use --plain-sub)",
            member.endpoint,
            self._name,
            refusal_reason(data),
        )


def connect_receiver(
    make_socket: Callable[..., zmq.Socket[Any]],
    watch: Callable[[LinkMonitor], LinkMonitor],
    context: zmq.Context[Any],
    config: ConsumerConfig,
    slots: LatestSlots,
    stats: ConsumerStats,
    bad_input: RateLimitedLog,
) -> tuple[Receiver, EndpointSet | None]:
    """The receive side of a fan-out consumer: a feed on the brokers' work ports (the
    default), or with ``config.plain_sub`` a SUB on their publish ports; and the publish
    EndpointSet the caller closes (None for a feed without shared memory).

    ``make_socket(kind, **options)`` makes a socket the caller tracks and closes;
    ``watch(link)`` keeps a monitor the caller closes before the sockets.
    """
    security = config.security
    sub = link = None
    endpoints = connections = None
    if config.plain_sub or config.uses_shm:
        sub = make_socket(zmq.SUB)
        topics = config.receive_subscriptions()
        if not config.plain_sub:  # a feed's SUB takes descriptors only (and the beacon)
            topics = [t for t in topics if t.startswith(b"$")]
        for prefix in topics:
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        security.secure(sub, "broker")
        # the monitor first (no event missed): refused handshakes to any broker retried
        link = watch(LinkMonitor(sub, config.publish))
        endpoints, connections = connect_all(sub, config.publish)
    tick = connections.sync if connections is not None else None
    if config.plain_sub:
        assert sub is not None
        receiver: Receiver = Receiver(
            sub,
            slots,
            stats,
            bad_input,
            tick=tick,
            link=link,
            shm=config.uses_shm,
            fallback=tuple(config.subscriptions()),
        )
        return receiver, endpoints
    feed = FeedReceiver(
        context,
        config.work,
        security,
        slots,
        stats,
        bad_input,
        streams=config.streams,
        name=config.name,
        sub=sub,
        tick=tick,
        link=link,
    )
    return feed, endpoints


def source_of(config: ConsumerConfig) -> str:
    """Where a consumer's frames come from, for its log lines."""
    if config.group is not None:
        return f"{config.work} as a worker of group {config.group}"
    if config.plain_sub:
        return f"{config.publish} (plain SUB)"
    shm = f", shared memory via {config.publish}" if config.uses_shm else ""
    return f"{config.work} (feed, by credit{shm})"
