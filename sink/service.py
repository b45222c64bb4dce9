"""The sink: results arrive on a PULL and a ROUTER socket and are stored in batches.

Plain clients PUSH result messages (``framebroker.protocol.ResultMessage``) to the sink's
results port (v1.0, at-most-once). Consumers speaking v1.1 send them from a DEALER to the
acknowledged results port with a delivery ``id``; once the batch holding a result is
committed the sink answers ``{"ack": [id, ...]}``, so the consumer keeps (and resends) a
result until it is stored. The store ignores a result it already holds (same consumer,
stream, session and seq): a result resent after a lost acknowledgement is stored once.
The sink decodes each message, stamps the time it arrived, and writes them to a
:class:`~broker.store.ResultStore` in batches (one transaction per ``batch_size`` results
or per ``flush_interval`` seconds, whichever comes first). A malformed message is
counted by reason (``malformed_by_reason``: ``invalid``, ``version``, ``unstorable``,
``multipart`` on the results port, ``envelope`` on the acknowledged one), logged
(rate-limited) and dropped; only the first parts of a many-part message are held.
Both sockets have ``ZMQ_MAXMSGSIZE`` = ``max_message_size`` (default 1 MiB: decoding a
msgpack body may take ~75 times its size in memory), and queue at most ``rcvhwm``
messages per connected peer. ``close()`` (or ``stop()`` then the end of ``run()``)
stores whatever already arrived before releasing the socket.
While the store cannot write (a full disk) results wait in :class:`~.pending.PendingResults`,
one entry per result key however often a consumer resends it, and are written on retry.
A control port (protocol v1.5, default the results port + 4 = 5561) answers ``ping``
and ``stats`` (:class:`framebroker.control_port.ControlPort`, the broker's code).
With CURVE keys in ``SinkConfig.security`` every port is a CURVE server that admits only
allow-listed client keys (:class:`~framebroker.security.ServerGuard`); refused handshakes
are counted in ``SinkStats.auth_rejected`` and logged.

The lifecycle is :class:`framebroker.service.Service`'s::

    sink = Sink(SinkConfig(results="tcp://127.0.0.1:0", db="results.sqlite"))
    sink.run_in_thread()         # binds (sink.results_endpoint is the real endpoint), runs
    ...
    sink.close()                 # from any other thread: stop, flush, release
"""

from __future__ import annotations

import logging
import time
from dataclasses import asdict, dataclass, field
from typing import Any

import zmq

from framebroker import __version__
from framebroker.capabilities import SINK, ping_fields
from framebroker.control_port import ControlPort, ControlTally
from framebroker.control_protocol import MAX_CONTROL_SIZE
from framebroker.errors import ProtocolError, StoreError, TransportError
from framebroker.multipart import recv_parts
from framebroker.protocol import decode_result, encode_ack, peek_result_id
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import ServerGuard
from framebroker.service import Service
from framebroker.transport import bind, make_socket

from .config import SinkConfig
from .jsonl import JsonLinesStore
from .pending import PendingResults
from .postgres import redact
from .record import ResultRecord
from .store import FanOutStore, ResultStore, open_writer

__all__ = ["Sink", "SinkConfig", "SinkStats", "open_store"]  # SinkConfig: from .config

log = logging.getLogger("framebroker.sink")

_POLL_MS = 100  # upper bound on how long stop()/close() waits for the loop to notice
_RETRY_S = 1.0  # after a failed write, wait this long before trying again
_FINAL_DRAIN_LIMIT = 100_000
_COUNTERS = ("received", "stored", "duplicates", "malformed", "store_errors", "dropped")
_ACK_LINGER_MS = 500  # on close, give the last acknowledgements this long to leave
_CONTROL_HWM = 64  # control messages queued per client each way (clients ask one at a time)


@dataclass(frozen=True)
class SinkStats:
    """Counters since start: messages received, results stored, and what went wrong."""

    received: int = 0  # messages taken off the socket
    stored: int = 0  # results written to the store
    duplicates: int = 0  # copies of a result stored or waiting (resent, not acknowledged yet)
    malformed: int = 0  # messages dropped because they did not decode
    store_errors: int = 0  # failed batch writes (retried)
    dropped: int = 0  # results lost because the store kept failing
    pending: int = 0  # distinct results decoded, not yet written
    auth_rejected: int = 0  # client handshakes rejected by CURVE (nothing of theirs received)
    malformed_by_reason: dict[str, int] = field(default_factory=dict)
    uptime_s: float = 0.0
    control_requests: int = 0  # requests on the control port (v1.5)
    control_errors: int = 0  # of them, answered with an error reply
    rejected_by_reason: dict[str, int] = field(default_factory=dict)  # control_invalid, ...

    def to_map(self) -> dict[str, object]:
        """The fields of the control port's ``stats`` reply (docs/protocol.md)."""
        return asdict(self)


def open_store(config: SinkConfig) -> ResultStore:
    """The store ``config`` asks for: SQLite or PostgreSQL, plus JSON Lines when ``jsonl``."""
    main = open_writer(config.db)
    if config.jsonl is None:
        return main
    try:
        jsonl = JsonLinesStore(config.jsonl)
    except StoreError:
        main.close()
        raise
    return FanOutStore([main, jsonl])


class Sink(Service):
    """Binds the results port and stores every well-formed result message."""

    thread_name = "framebroker-sink"

    def __init__(self, config: SinkConfig, store: ResultStore | None = None) -> None:
        super().__init__()
        self.config = config
        self._store = store
        self._ctx: zmq.Context[Any] | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._router: zmq.Socket[Any] | None = None
        self._control_sock: zmq.Socket[Any] | None = None
        self._endpoint: str | None = None
        self._acked_endpoint: str | None = None
        self._control_endpoint: str | None = None
        self._started = time.monotonic()
        self._pending = PendingResults()  # one entry per result key, however often resent
        self._flush_at = 0.0
        self._retry_at = 0.0
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._malformed: dict[str, int] = {}  # by reason
        self._ratelog = RateLimitedLog(log)
        self._guard = ServerGuard(config.security, "sink")
        self._tally = ControlTally()
        off = () if config.acked_results is not None else ("acked_results",)
        self._control = ControlPort(
            {
                "ping": lambda: ping_fields(SINK, __version__, off=off),
                "stats": lambda: self.stats().to_map(),
            },
            self._tally,
            self._ratelog,
            server="sink",
        )

    @property
    def results_endpoint(self) -> str:
        """The endpoint really bound (port filled in when ``:0`` was asked)."""
        if self._endpoint is None:
            raise TransportError("the sink is not started; call start() first")
        return self._endpoint

    @property
    def acked_results_endpoint(self) -> str | None:
        """The acknowledged results endpoint really bound (None when disabled)."""
        return self._acked_endpoint

    @property
    def control_endpoint(self) -> str | None:
        """The control endpoint really bound (None when disabled)."""
        return self._control_endpoint

    def _open(self) -> None:
        """Open the store and bind the results ports. Raises StoreError / TransportError."""
        if self._store is None:
            self._store = open_store(self.config)
        self._ctx = zmq.Context()
        cfg = self.config
        self._sock = make_socket(
            self._ctx, zmq.PULL, linger_ms=0, rcvhwm=cfg.rcvhwm, maxmsgsize=cfg.max_message_size
        )
        self._guard.start(self._ctx)  # before any bind: CURVE on both ports, or on none
        self._guard.secure(self._sock, "results")
        self._endpoint = bind(self._sock, cfg.results)
        if cfg.acked_results is not None:
            self._router = make_socket(
                self._ctx,
                zmq.ROUTER,
                linger_ms=_ACK_LINGER_MS,
                rcvhwm=cfg.rcvhwm,
                maxmsgsize=cfg.max_message_size,
            )
            self._guard.secure(self._router, "acked_results")
            self._acked_endpoint = bind(self._router, cfg.acked_results)
        if cfg.control is not None:
            self._control_sock = make_socket(
                self._ctx,
                zmq.ROUTER,
                linger_ms=0,
                sndhwm=_CONTROL_HWM,
                rcvhwm=_CONTROL_HWM,
                maxmsgsize=MAX_CONTROL_SIZE,
                heartbeat_ms=None,
            )
            self._guard.secure(self._control_sock, "control")
            self._control_endpoint = bind(self._control_sock, cfg.control)
        self._started = time.monotonic()
        log.info(
            "sink: results on %s, acknowledged results on %s, control on %s, stored in %s",
            self._endpoint,
            self._acked_endpoint or "-",
            self._control_endpoint or "-",
            self._where(),
        )
        binds = {"results": cfg.results, "acked_results": cfg.acked_results, "control": cfg.control}
        self._guard.announce({name: e for name, e in binds.items() if e is not None})

    def _serve(self) -> None:
        """Receive and store until stopped; then store what already arrived."""
        poller = zmq.Poller()
        sockets = [s for s in (self._sock, self._router) if s is not None]
        control = self._control_sock
        for s in [*sockets, *([control] if control is not None else [])]:
            poller.register(s, zmq.POLLIN)
        while not self.stopping:
            for s, _ in poller.poll(self._poll_timeout_ms()):
                if s is control:
                    self._control.serve(control)
                else:
                    self._drain(s, self._room())
            self._maybe_flush()
            self._guard.poll()
        for s in sockets:
            self._drain(s, _FINAL_DRAIN_LIMIT)
        self._final_flush()

    def _release(self) -> None:
        """Release the sockets (the router lingers briefly: the last acks) and the store."""
        self._guard.close()
        if self._sock is not None:
            self._sock.close(linger=0)
        if self._router is not None:
            self._router.close()
        if self._control_sock is not None:
            self._control_sock.close(linger=0)
        if self._store is not None:
            self._store.close()
        if self._ctx is not None:
            self._ctx.term()
        stats = self.stats()
        log.info(
            "sink: closed; %d received, %d stored, %d duplicates, %d malformed, %d dropped",
            stats.received,
            stats.stored,
            stats.duplicates,
            stats.malformed,
            stats.dropped,
        )

    def stats(self) -> SinkStats:
        return SinkStats(
            pending=len(self._pending),
            auth_rejected=self._guard.rejected,
            malformed_by_reason=dict(self._malformed),
            uptime_s=time.monotonic() - self._started,
            control_requests=self._tally.control_requests,
            control_errors=self._tally.control_errors,
            rejected_by_reason=dict(self._tally.rejected_by_reason),
            **self._counts,
        )

    # --- receive ------------------------------------------------------------------------

    def _poll_timeout_ms(self) -> int:
        if not self._pending:
            return _POLL_MS
        due = max(self._flush_at, self._retry_at) - time.monotonic()
        return max(0, min(_POLL_MS, int(due * 1000) + 1))

    def _room(self) -> int:
        """How many to receive before the next flush check: exactly fill the batch."""
        room = self.config.batch_size - len(self._pending)
        return room if room > 0 else self.config.batch_size  # the store is failing

    def _drain(self, sock: zmq.Socket[Any], limit: int) -> None:
        routed = sock is self._router
        want = 2 if routed else 1  # [peer, result] on the ROUTER, [result] on the PULL
        for _ in range(limit):
            try:
                parts, total = recv_parts(sock, want)
            except zmq.Again:
                return
            except zmq.ZMQError as exc:
                self._ratelog.warning("recv", "sink: receive failed: %s", exc)
                return
            if total != want:
                self._counts["received"] += 1
                reason = "envelope" if routed else "multipart"
                self._malformed_message(reason, sum(map(len, parts)), f"{total} parts")
                continue
            self._accept(parts[-1], parts[0] if routed else None)

    def _malformed_message(self, reason: str, size: int, why: object) -> None:
        self._counts["malformed"] += 1
        self._malformed[reason] = self._malformed.get(reason, 0) + 1
        self._ratelog.warning(
            "malformed:" + reason,
            "sink: dropped a malformed result message (%s, %d bytes): %s",
            reason,
            size,
            why,
        )

    def _accept(self, data: bytes, peer: bytes | None = None) -> None:
        self._counts["received"] += 1
        try:
            message = decode_result(data)
            record = ResultRecord.from_message(message, time.time_ns())
        except ProtocolError as exc:
            self._malformed_message(exc.kind, len(data), exc)
            delivery = peek_result_id(data) if peer is not None else None
            if peer is not None and delivery is not None:
                self._send_acks({peer: [delivery]})  # resending it would not help
            return
        if not self._pending:
            self._flush_at = time.monotonic() + self.config.flush_interval
        ack = None if peer is None or message.id is None else (peer, message.id)
        if not self._pending.add(record, ack):
            self._counts["duplicates"] += 1  # a copy of a result still waiting to be stored

    def _send_acks(self, acks: dict[bytes, list[int]]) -> None:
        """Tell each peer which of its results are stored (a gone peer misses it)."""
        if self._router is None:
            return
        for peer, ids in acks.items():
            try:
                self._router.send_multipart([peer, encode_ack(ids)], zmq.NOBLOCK)
            except zmq.ZMQError as exc:
                self._ratelog.warning("ack", "sink: acknowledgement not sent: %s", exc)

    # --- store --------------------------------------------------------------------------

    def _maybe_flush(self) -> None:
        if not self._pending:
            return
        now = time.monotonic()
        due = len(self._pending) >= self.config.batch_size or now >= self._flush_at
        if due and now >= self._retry_at:
            self._flush()

    def _flush(self) -> bool:
        assert self._store is not None
        batch = self._pending.batch()
        try:
            new = self._store.add_many(batch)
        except StoreError as exc:
            self._counts["store_errors"] += 1
            self._retry_at = time.monotonic() + _RETRY_S
            excess = len(batch) - self.config.max_pending
            self._counts["dropped"] += self._pending.drop_oldest(excess)
            self._ratelog.warning(
                "store", "sink: %s; %d results kept for retry", exc, len(self._pending)
            )
            return False
        self._counts["stored"] += len(new)
        self._counts["duplicates"] += len(batch) - len(new)
        self._send_acks(self._pending.take_acks())
        return True

    def _final_flush(self) -> None:
        if self._pending and not self._flush():
            self._counts["dropped"] += len(self._pending)
            log.error("sink: %d results could not be stored before exit", len(self._pending))
            self._pending.clear()

    def _where(self) -> str:
        db = redact(self.config.db)
        return f"{db} and {self.config.jsonl}" if self.config.jsonl else db
