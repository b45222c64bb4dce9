"""The broker service: ingest -> publish forwarding with a last value cache, and control.

One thread runs one poll loop over five sockets:

- ingest (SUB, bind, subscribed to everything, ``MAXMSGSIZE``): every message is checked
  on a view of the received buffer (no copy) with :func:`framebroker.protocol.peek_frame`
  (topic, version byte, header length, header is a msgpack map) and against its stream's
  last fully decoded header (same stream and session, integer seq); the full
  :func:`~framebroker.protocol.decode_frame` runs for a new stream, when those differ,
  and at least once a second per stream (``needs_check``). Full decoding of every header
  cost ~9 us a message, most of the loop's budget. A valid frame is forwarded as the very
  ``zmq.Frame`` that was received (zero copy), recorded in the
  :class:`~broker.registry.StreamRegistry` and kept as its stream's newest frame. A
  malformed message is counted by kind, logged (rate-limited) and dropped, never
  forwarded; so is the first frame of a new stream beyond ``limits.max_streams``, and
  every part of a multipart message (kind ``multipart``: a frame message is one frame).
- publish (XPUB, bind, ``XPUB_VERBOSE``, ``MAXMSGSIZE``): every subscribe message,
  repeated ones too, makes the broker send the cached newest frame of each live stream
  whose topic starts with the subscribed prefix (the ZMQ Guide's "Last Value Cache";
  ``b""`` matches all), within rate limits (``broker/limits.py``). XPUB sends that frame
  to *every* matching subscriber, so a subscriber that was already there may see it
  twice (same session and seq); consumers drop such duplicates.
- control (ROUTER, bind, ``MAXMSGSIZE``): msgpack requests
  ``ping``/``streams``/``stats``/``groups``, each answered once (:mod:`framebroker.control_port`);
  a bad request gets ``ok=false``, never silence.
- work (ROUTER, bind, ``MAXMSGSIZE``, protocol v1.2): workers of a *work group* ask for
  frames by credit and each new frame goes to at most one idle worker per group
  (:mod:`broker.work_port`, :mod:`broker.groups`); frames that arrive while every worker
  is busy wait as their stream's newest, never in a queue.
- a monitor of the ingest socket counts peer disconnects (read every 100 ms tick rather
  than polled: one socket less in every poll); libzmq disconnects a peer that sends more
  than ``MAXMSGSIZE``, so oversize messages show up there.
- security (:class:`~framebroker.security.ServerGuard`): with CURVE keys in the config all
  four sockets are CURVE servers admitting only allow-listed client keys; handshakes it
  rejects are counted (``auth_rejected`` in ``stats``) and logged, and they never reach
  the loop: such a client sends and receives nothing.

The lifecycle is :class:`framebroker.service.Service`'s: ``start()`` binds (exposing the
real endpoints), ``run()`` blocks in the loop until ``stop()`` (a signal handler, another
thread) or ``close()``, which take effect within ``poll_ms``.
"""

from __future__ import annotations

import contextlib
import logging
import time
from dataclasses import dataclass
from typing import Any

import zmq
from zmq.utils.monitor import parse_monitor_message

from framebroker import __version__
from framebroker.capabilities import BROKER, ping_fields
from framebroker.control_port import ControlPort
from framebroker.errors import ProtocolError, TransportError
from framebroker.protocol import decode_frame, peek_frame
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import FAILURE_EVENTS, ServerGuard
from framebroker.service import Service
from framebroker.shm_protocol import BEACON_TOPIC, SHM_TOPIC_PREFIX, encode_beacon
from framebroker.transport import bind, make_socket

from .config import BrokerConfig
from .groups import GroupInfo, WorkGroups
from .limits import CacheSendLimiter
from .publish_bound import PublishBound, publish_hwm
from .registry import StreamEntry, StreamInfo, StreamRegistry
from .shm_notices import ShmNotices
from .stats import BrokerStats, Counters, StatsLog
from .subscriptions import Subscriptions
from .work_port import WorkPort

log = logging.getLogger("framebroker.broker")

INGEST_BATCH = 256  # messages drained per poll before other sockets get a turn
OTHER_BATCH = 64
TICK_NS = 100_000_000  # housekeeping (stale streams, stats log) every 100 ms
CONTROL_HWM = 64  # control messages queued per client each way (clients ask one at a time)

Socket = zmq.Socket[Any]


@dataclass(frozen=True)
class _Sockets:
    ingest: Socket
    publish: Socket
    control: Socket
    work: Socket
    monitor: Socket


class Broker(Service):
    """Forwards frames from producers to subscribers and keeps the newest per stream.

    >>> config = BrokerConfig(ingest="tcp://127.0.0.1:0", publish="tcp://127.0.0.1:0",
    ...                       control="tcp://127.0.0.1:0")
    >>> with Broker(config).run_in_thread() as broker:
    ...     print(broker.publish_endpoint)  # runs in a thread until the block ends
    """

    thread_name = "framebroker-broker"

    def __init__(self, config: BrokerConfig | None = None) -> None:
        super().__init__()
        self.config = config or BrokerConfig()
        self.ingest_endpoint = ""
        self.publish_endpoint = ""
        self.control_endpoint = ""
        self.work_endpoint = ""
        limits = self.config.limits
        self._registry = StreamRegistry(
            self.config.stale_after,
            self.config.forget_after,
            max_streams=limits.max_streams,
            cache_budget=limits.cache_budget,
        )
        self._counters = Counters()
        self._shm = ShmNotices(self.config.stale_after, limits.max_streams)
        self._rlog = RateLimitedLog(log)
        self._subscriptions = Subscriptions(
            limits.max_subscriptions, self._counters, self._rlog, limits.max_subscription_size
        )
        self._cache_limiter = CacheSendLimiter(limits.cache_send_rate)
        self._stats_log = StatsLog(self.config.log_stats) if self.config.log_stats else None
        self._work = WorkPort(
            WorkGroups(
                max_groups=self.config.max_groups,
                max_workers=self.config.max_workers,
                worker_timeout=self.config.worker_timeout,
                max_feeds=self.config.max_feeds,
                newest=self._newest,
            ),
            self._rlog,
        )
        self._bound: PublishBound | None = None
        self._control = ControlPort(
            {
                "ping": lambda: ping_fields(BROKER, __version__),
                "streams": lambda: {"streams": [info.to_map() for info in self.streams()]},
                "stats": lambda: self.stats().to_map(),
                "groups": lambda: {"groups": [info.to_map() for info in self.groups()]},
            },
            self._counters,
            self._rlog,
        )
        self._guard = ServerGuard(self.config.security, "broker")
        self._ctx: zmq.Context[Any] | None = None
        self._sockets: list[Socket] = []  # every socket made, for teardown
        self._io: _Sockets | None = None
        self._started_ns = time.monotonic_ns()

    # --- lifecycle ------------------------------------------------------------------

    def _open(self) -> None:
        """Bind the four sockets; the real endpoints are then in ``*_endpoint``."""
        self._ctx = zmq.Context()
        self._io = self._bind_all(self._ctx)
        self._started_ns = time.monotonic_ns()
        log.info(
            "broker listening: ingest %s, publish %s, control %s, work %s (max message %d bytes)",
            self.ingest_endpoint,
            self.publish_endpoint,
            self.control_endpoint,
            self.work_endpoint,
            self.config.max_message_size,
        )
        self._guard.announce(
            {n: getattr(self.config, n) for n in ("ingest", "publish", "control", "work")}
        )

    def _bind_all(self, ctx: zmq.Context[Any]) -> _Sockets:
        cfg = self.config
        ingest = self._add(make_socket(ctx, zmq.SUB, maxmsgsize=cfg.max_message_size))
        lim = cfg.limits
        hwm = publish_hwm(cfg.publish_hwm, cfg.publish_queue_bytes, cfg.max_message_size)
        publish = self._add(
            make_socket(ctx, zmq.XPUB, sndhwm=hwm, maxmsgsize=lim.max_subscription_size)
        )
        self._bound = PublishBound(
            publish, hwm=hwm, max_bytes=cfg.publish_queue_bytes, rlog=self._rlog
        )
        hwm, size = CONTROL_HWM, lim.max_control_size
        control = self._add(
            make_socket(ctx, zmq.ROUTER, sndhwm=hwm, rcvhwm=hwm, maxmsgsize=size, heartbeat_ms=None)
        )
        work = self._add(make_socket(ctx, zmq.ROUTER, maxmsgsize=size))
        self._guard.start(ctx)  # before any bind: CURVE on all four sockets, or on none
        self._guard.secure(ingest, "ingest", monitor=False)  # its monitor is ours, below
        self._guard.secure(publish, "publish")
        self._guard.secure(control, "control")
        self._guard.secure(work, "work")
        try:
            self._work.attach(work)
            ingest.setsockopt(zmq.SUBSCRIBE, b"")
            publish.setsockopt(zmq.XPUB_VERBOSE, 1)
            events = zmq.EVENT_DISCONNECTED | FAILURE_EVENTS
            monitor = self._add(ingest.get_monitor_socket(events))
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot set up broker sockets: {exc}") from exc
        self.ingest_endpoint = bind(ingest, cfg.ingest)
        self.publish_endpoint = bind(publish, cfg.publish)
        self.control_endpoint = bind(control, cfg.control)
        self.work_endpoint = bind(work, cfg.work)
        return _Sockets(ingest, publish, control, work, monitor)

    def _add(self, sock: Socket) -> Socket:
        self._sockets.append(sock)
        return sock

    def _serve(self) -> None:
        assert self._io is not None
        try:
            self._loop(self._io)
        except zmq.ZMQError as exc:
            raise TransportError(f"broker socket failed: {exc}") from exc
        finally:
            log.info("broker stopped")

    def _release(self) -> None:
        """Close every socket and the context."""
        self._guard.close()
        if self._io is not None:
            with contextlib.suppress(zmq.ZMQError):
                self._io.ingest.disable_monitor()
            self._io = None
        for sock in reversed(self._sockets):
            sock.close(linger=0)
        self._sockets.clear()
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None

    # --- reports ---------------------------------------------------------------------

    def stats(self) -> BrokerStats:
        """A snapshot of the totals; callable from any thread."""
        now = time.monotonic_ns()
        live, stale = self._registry.counts(now)
        stats = BrokerStats.from_counters(
            self._counters,
            uptime_s=(now - self._started_ns) / 1e9,
            live=live,
            stale=stale,
            forgotten=self._registry.forgotten,
            work=self._work.counters(),
            publish_overflows=self._bound.overflows if self._bound else 0,
            publish_hwm=self._bound.hwm if self._bound else self.config.publish_hwm,
            auth_by_socket=self._guard.rejected_by_socket,
            auth_by_reason=self._guard.rejected_by_reason,
            cached_bytes=self._registry.cached_bytes,
            subscription_prefixes=len(self._subscriptions),
        )
        stats.rejected_by_reason.update(self._registry.refused())
        return stats

    def streams(self) -> list[StreamInfo]:
        """Every known stream, sorted by id; callable from any thread."""
        return self._registry.snapshot()

    def _newest(self, prefixes: tuple[bytes, ...]) -> list[StreamEntry]:
        """The cached newest frames of the live streams ``prefixes`` select (a new feed's)."""
        now = time.monotonic_ns()
        found = {e.topic: e for p in prefixes for e in self._registry.matching(p, now)}
        return list(found.values())

    def groups(self) -> list[GroupInfo]:
        """Every work group with its workers, sorted by name; callable from any thread."""
        return self._work.snapshot(time.monotonic_ns())

    # --- the loop --------------------------------------------------------------------

    def _loop(self, io: _Sockets) -> None:
        poller = zmq.Poller()
        for sock in (io.ingest, io.publish, io.control, io.work):  # the monitor: on the tick
            poller.register(sock, zmq.POLLIN)
        timeout = self.config.poll_ms
        next_tick = time.monotonic_ns() + TICK_NS
        stats_every = int(self.config.log_stats * 1e9)
        next_stats = time.monotonic_ns() + stats_every
        handlers = {
            io.ingest: lambda: self._drain_ingest(io),
            io.publish: lambda: self._drain_subscriptions(io.publish),
            io.control: lambda: self._control.serve(io.control),
            io.work: lambda: self._work.serve(time.monotonic_ns()),
        }
        poll = poller.poll
        while not self.stopping:
            for sock, _ in poll(timeout):
                handlers[sock]()
            now = time.monotonic_ns()
            if now >= next_tick:
                next_tick = now + TICK_NS
                self._drain_monitor(io.monitor)
                self._guard.poll()
                self._registry.expire(now)
                self._shm.expire(now)
                self._work.expire(now)
                self._cache_limiter.prune(now)
                if self._bound is not None:
                    self._bound.tick()
                if self._stats_log is not None and now >= next_stats:
                    next_stats = now + stats_every
                    self._stats_log.emit(self.stats())

    def _drain_ingest(self, io: _Sockets) -> None:
        """The hot path: check, forward (zero copy), record and cache each frame."""
        recv = io.ingest.recv
        assert self._bound is not None
        send = self._bound.send
        registry = self._registry
        lookup, needs_check, touch = registry.lookup, registry.needs_check, registry.touch
        now = time.monotonic_ns()  # one reading per batch: a batch takes well under 1 ms
        c = self._counters
        work = self._work
        groups = work.groups
        for _ in range(INGEST_BATCH):
            try:
                frame = recv(zmq.NOBLOCK, copy=False)
            except zmq.Again:
                return
            if frame.more:  # every message is one frame: a multipart one is malformed
                self._drop_multipart(io.ingest, len(frame.buffer))
                continue
            buffer = frame.buffer
            try:
                if buffer[:1] == b"$":  # a shared-memory descriptor (the only $ topic in)
                    self._shm.ingest(frame, send, now)
                    continue
                topic, peeked, payload = peek_frame(buffer)
                entry = lookup(topic)
                if needs_check(entry, peeked, payload, now):
                    header = decode_frame(buffer).header
                    if entry is None and not registry.admit(header.stream):
                        continue  # beyond limits.max_streams: counted and logged
                else:
                    header = None
            except ProtocolError as exc:
                self._drop(exc, len(buffer))
                continue
            size = len(buffer)
            send(frame)  # first: the rest is bookkeeping, off the latency path
            c.frames_in += 1
            c.bytes_in += size
            c.frames_out += 1
            if header is not None:
                entry = registry.observe(header, size, now, frame)
                if not self._shm.has_segment(
                    header.stream, header.session, now
                ) and self._subscriptions.any_starting_with(SHM_TOPIC_PREFIX):
                    self._shm.network(header.stream, send)
            elif entry is not None:
                touch(entry, peeked["seq"], size, now, frame)
            if groups and entry is not None:
                work.offer(entry)

    def _drop(self, exc: ProtocolError, size: int) -> None:
        self._counters.count_malformed(exc.kind)
        self._rlog.warning(
            "malformed:" + exc.kind,
            "dropped malformed message (%s, %d bytes): %s; starts with %r",
            exc.kind,
            size,
            exc.reason,
            exc.data[:24],
        )

    def _drop_multipart(self, ingest: Socket, size: int) -> None:
        """Drop the rest of a multipart message (libzmq delivers its parts together, so
        this never blocks); counted once, as kind ``multipart``, whatever its parts hold."""
        parts = 1
        while ingest.rcvmore:
            size += len(ingest.recv(copy=False).buffer)
            parts += 1
        self._counters.count_malformed("multipart")
        self._rlog.warning(
            "malformed:multipart",
            "dropped a %d-part message (%d bytes): a frame message is one ZeroMQ frame",
            parts,
            size,
        )

    def _drain_subscriptions(self, publish: Socket) -> None:
        accept = self._subscriptions.accept
        for _ in range(OTHER_BATCH):
            try:
                msg = publish.recv(zmq.NOBLOCK)
            except zmq.Again:
                return
            prefix = accept(msg)
            if prefix is not None and prefix.startswith(SHM_TOPIC_PREFIX):
                self._send_cached_shm(publish, prefix[len(SHM_TOPIC_PREFIX) :])
            elif prefix == BEACON_TOPIC:  # a consumer asks whether we send network notices
                publish.send(encode_beacon())
            elif prefix is not None:
                self._send_cached(publish, prefix)

    def _send_cached(self, publish: Socket, prefix: bytes) -> None:
        """Last value cache: the newest frame of each live stream matching ``prefix``."""
        c = self._counters
        now = time.monotonic_ns()
        sent = 0
        for entry in self._cache_limiter.select(self._registry.matching(prefix, now), now, c):
            c.cache_sends += 1  # counted first: whoever sees the frame sees the count
            assert self._bound is not None
            self._bound.send(entry.cached)
            sent += 1
        log.debug("subscription %r: sent %d cached frame(s)", prefix, sent)

    def _send_cached_shm(self, publish: Socket, prefix: bytes) -> None:
        """A ``$shm/`` subscription: newest descriptors and network notices that match."""
        now = time.monotonic_ns()
        for message in self._shm.cached(prefix, self._registry.matching(prefix, now), now):
            publish.send(message, copy=False)

    def _drain_monitor(self, monitor: Socket) -> None:
        for _ in range(OTHER_BATCH):
            try:
                event = parse_monitor_message(monitor.recv_multipart(zmq.NOBLOCK))
            except zmq.Again:
                return
            if self._guard.observe("ingest", event):  # a rejected CURVE handshake
                continue
            if event["event"] == zmq.EVENT_DISCONNECTED:
                self._counters.disconnects += 1
                self._rlog.log(
                    logging.INFO,
                    "disconnect",
                    "ingest peer disconnected (producer stopped or failed, or sent a "
                    "message over %d bytes)",
                    self.config.max_message_size,
                )
