"""Result delivery to the sink, never blocking the frame loop.

``ResultSender`` (protocol v1.0, PUSH): at-most-once. PUSH blocks at its high-water mark,
so results are sent with NOBLOCK: at most ``result_buffer`` results wait for a slow,
absent or restarting sink, and the rest are counted as dropped and logged (rate-limited)
as "sink unreachable". What a killed sink had received but not stored is lost.

``AckedSender`` (protocol v1.1, DEALER to the acknowledged results port): at-least-once.
Every result carries a delivery id and stays in a bounded spool until the sink
acknowledges it (after committing it); unacknowledged results are resent every
``RESEND_S``. The sink stores a result once however often it arrives (keyed by consumer,
stream, session, seq), so a restarted or killed sink loses nothing and stores nothing
twice. Only a full spool (``result_buffer`` results waiting) drops results, oldest first.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import sys
import time
from collections import OrderedDict
from typing import Any, Protocol

import zmq

from framebroker.errors import ProcessorError, ProtocolError
from framebroker.link import LinkMonitor, connect_watched
from framebroker.protocol import VERSION_ACKED, ResultMessage, decode_ack, encode_result
from framebroker.ratelimit import RateLimitedLog
from framebroker.transport import make_socket

from .config import ConsumerConfig
from .sink_set import SinkSet, make_sink_set
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

RESEND_S = 2.0  # an unacknowledged result is sent again after this long
RESEND_BURST = 500  # at most this many resends per pump()
RESULT_LINGER_MS = 500  # on close, give queued results this long to reach the sink


class Sender(Protocol):
    def send(self, result: ResultMessage) -> bool: ...

    def pump(self) -> None: ...

    def flush(self, timeout: float) -> int: ...


class ResultSender:
    """Sends on a connected PUSH socket; owns no socket (the consumer closes it).

    ``link``: the socket's connection monitor (owned by the caller), polled in ``pump``
    so that a sink that refused our handshake is tried again."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        endpoint: str,
        stats: ConsumerStats,
        link: LinkMonitor | None = None,
    ) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._stats = stats
        self._log = RateLimitedLog(log, interval=5.0)
        self._link = link

    def send(self, result: ResultMessage) -> bool:
        """Queue ``result`` for the sink; False (and counted) when it had to be dropped.

        Raises ProcessorError when the result is not made of msgpack-able plain types.
        """
        try:
            data = encode_result(result)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProcessorError(f"result is not made of plain types: {exc}") from None
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError as exc:
            self._stats.results_dropped += 1
            reason = "" if isinstance(exc, zmq.Again) else f" ({exc})"
            self._log.warning(
                "sink",
                "sink unreachable at %s%s, %d results dropped",
                self._endpoint,
                reason,
                self._stats.results_dropped,
            )
            return False
        self._stats.results_sent += 1
        return True

    def pump(self) -> None:
        """No acknowledgements on PUSH: only retry a sink that refused our handshake."""
        if self._link is not None:
            self._link.poll()

    def flush(self, timeout: float) -> int:
        """PUSH cannot tell what arrived; the socket's linger sends what is queued."""
        return 0


class AckedSender:
    """Sends on a connected DEALER and keeps each result until the sink acknowledges it."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        endpoint: str,
        stats: ConsumerStats,
        capacity: int,
        link: LinkMonitor | None = None,
        sinks: SinkSet | None = None,
    ) -> None:
        self._sock = sock
        self._sinks = sinks  # a sink set: re-resolved from pump()
        self._endpoint = endpoint
        self._stats = stats
        self._capacity = capacity
        self._spool: OrderedDict[int, tuple[bytes, float]] = OrderedDict()  # id -> (data, sent)
        self._next_id = 1
        self._last_ack = time.monotonic()
        self._log = RateLimitedLog(log, interval=5.0)
        self._link = link  # as ResultSender's

    @property
    def pending(self) -> int:
        """Results sent but not yet acknowledged."""
        return len(self._spool)

    def send(self, result: ResultMessage) -> bool:
        """Spool ``result`` and send it; False when the spool was full and one was dropped.

        Raises ProcessorError when the result is not made of msgpack-able plain types.
        """
        delivery = self._next_id
        message = dataclasses.replace(result, version=VERSION_ACKED, id=delivery)
        try:
            data = encode_result(message)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ProcessorError(f"result is not made of plain types: {exc}") from None
        self._next_id += 1
        kept = True
        if len(self._spool) >= self._capacity:
            self._spool.popitem(last=False)
            self._stats.results_dropped += 1
            kept = False
            self._log.warning(
                "spool",
                "sink at %s has not acknowledged %d results; the spool is full, "
                "%d oldest results dropped",
                self._endpoint,
                len(self._spool),
                self._stats.results_dropped,
            )
        self._spool[delivery] = (data, time.monotonic())
        self._try_send(data)
        self._stats.results_sent += 1
        self.pump()
        return kept

    def pump(self) -> None:
        """Take acknowledgements off the socket and resend what waited too long."""
        if self._link is not None:
            self._link.poll()
        if self._sinks is not None:
            self._sinks.maybe_refresh()
        while True:
            try:
                data = self._sock.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
            except zmq.ZMQError as exc:
                self._log.warning("recv", "acknowledgements from %s: %s", self._endpoint, exc)
                break
            try:
                ids = decode_ack(data)
            except ProtocolError as exc:
                self._log.warning("ack", "bad acknowledgement from the sink: %s", exc)
                continue
            self._last_ack = time.monotonic()
            for delivery in ids:
                if self._spool.pop(delivery, None) is not None:
                    self._stats.results_acked += 1
        self._resend()

    def _resend(self) -> None:
        now = time.monotonic()
        due = [
            (delivery, data)
            for delivery, (data, sent) in self._spool.items()
            if now - sent >= RESEND_S
        ][:RESEND_BURST]
        if due and now - self._last_ack >= RESEND_S:
            self._log.warning(
                "waiting",
                "no acknowledgement from the sink at %s for %.0f s; %d results spooled",
                self._endpoint,
                now - self._last_ack,
                len(self._spool),
            )
        for delivery, data in due:
            self._spool[delivery] = (data, now)
            self._spool.move_to_end(delivery)
            if not self._try_send(data):
                break
            self._stats.results_resent += 1

    def _try_send(self, data: bytes) -> bool:
        try:
            self._sock.send(data, zmq.NOBLOCK)
        except zmq.ZMQError:
            return False  # queue full or no sink yet: the spool keeps it, resent later
        return True

    def flush(self, timeout: float) -> int:
        """Wait up to ``timeout`` s for every spooled result to be acknowledged.

        Returns how many are still unacknowledged (lost when the consumer exits).
        """
        deadline = time.monotonic() + timeout
        while self._spool and time.monotonic() < deadline:
            self._sock.poll(50)
            self.pump()
        if self._spool:
            log.error(
                "%d results not acknowledged by the sink at %s before exit: lost",
                len(self._spool),
                self._endpoint,
            )
        return len(self._spool)


def connect_sender(
    context: zmq.Context[Any], config: ConsumerConfig, stats: ConsumerStats
) -> tuple[zmq.Socket[Any], Sender, LinkMonitor] | None:
    """The socket to the sink, its sender and the socket's connection monitor, as
    ``config`` asks (None: results go nowhere).

    ``acked_results`` set: a DEALER and an :class:`AckedSender` (at-least-once), connected
    to every sink of ``sink`` when a sink set is given (:mod:`.sink_set`); otherwise
    ``results``: a PUSH and a :class:`ResultSender` (at-most-once). The caller closes the
    monitor, then the socket (with its linger, so queued results get ``RESULT_LINGER_MS``).
    """
    endpoint = config.acked_results or config.results
    if endpoint is None:
        return None
    kind = zmq.DEALER if config.acked_results is not None else zmq.PUSH
    sock = make_socket(context, kind, sndhwm=config.result_buffer, linger_ms=RESULT_LINGER_MS)
    sinks: SinkSet | None = None
    link: LinkMonitor | None = None
    try:
        config.security.secure(sock, "sink")
        if config.sink is not None and kind == zmq.DEALER:
            link = LinkMonitor(sock, config.sink, peer="sink", lost_note="; results wait for it")
            sinks = make_sink_set(sock, config.sink, config.sink_port())
            endpoint = sinks.describe()
        else:
            link = connect_watched(sock, endpoint, peer="sink", lost_note="; results wait for it")
    except BaseException:
        if link is not None:
            link.close()
        sock.close(linger=0)
        raise
    if kind == zmq.DEALER:
        sender = AckedSender(sock, endpoint, stats, config.result_buffer, link, sinks)
        return sock, sender, link
    return sock, ResultSender(sock, endpoint, stats, link), link


def print_json_line(result: ResultMessage) -> None:
    """Print a result as one JSON line on stdout (``--print``).

    One write per line: ``print`` writes the text and its newline separately, so the lines
    of workers sharing a stdout could interleave mid-line.
    """
    line = json.dumps(result.to_map(), default=_plain, separators=(",", ":"))
    sys.stdout.write(line + "\n")
    sys.stdout.flush()


def _plain(obj: object) -> object:
    tolist = getattr(obj, "tolist", None)
    if callable(tolist):
        return tolist()
    if isinstance(obj, bytes):
        return obj.hex()
    return str(obj)
