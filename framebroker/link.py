"""Say when a client's connection to a server comes and goes, and retry refused handshakes.

A PUB socket never tells its user that nobody is listening: frames are silently dropped
while the broker is down. A ZeroMQ socket monitor reports connect and disconnect events;
this logs them once per change. It also reports a handshake the server refused (CURVE:
our key not allowed, or one side without CURVE); libzmq never retries those, so this
reconnects every ``REFUSED_RETRY_S`` seconds: adding our key to the server's allow-list
lets the client in without a restart. Every client socket of framebroker has one:
producers (to the broker's ingest), consumers (publish or work port, and the sink's
results port) and the viewer (publish).

The monitor is read through a plain socket on the socket's own context (shadowed), so
the watched socket may be a ``zmq.asyncio`` one. :meth:`LinkMonitor.poll` reconnects
the watched socket: call it from the thread that uses that socket.
"""

from __future__ import annotations

import contextlib
import itertools
import logging
import time
from collections.abc import Mapping
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from framebroker.ratelimit import RateLimitedLog
from framebroker.security import FAILURE_EVENTS, refusal
from framebroker.transport import connect

log = logging.getLogger("framebroker.link")
_names = itertools.count()

# a broken handshake (no detail) is left to libzmq, which reconnects by itself
_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | FAILURE_EVENTS
REFUSED_RETRY_S = 5.0


class LinkMonitor:
    """Watches one socket's connection; call :meth:`poll` now and then, :meth:`close` at end."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        endpoint: str,
        *,
        peer: str = "broker",
        lost_note: str = "",
        logger: logging.Logger = log,
    ) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._peer = peer
        self._lost_note = lost_note  # what losing the peer means for this client
        self._log = logger
        self._monitor: zmq.Socket[Any] | None = _monitor_socket(sock)
        self.connected = False
        self.connects = 0
        self.refused = 0  # handshakes the server refused
        self._retry_at: float | None = None
        self._retry: set[str] = set()  # endpoints whose handshake was refused
        self._rlog = RateLimitedLog(logger, interval=30.0)

    def poll(self) -> None:
        """Handle the events that arrived (never blocks)."""
        monitor = self._monitor
        if monitor is None:
            return
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            if not isinstance(event, dict):
                continue
            refused = refusal(event)
            if refused is not None and refused[1]:  # libzmq gave up: ours to retry
                self.connected = False  # the TCP connection came, the server did not
                self._refused(refused[0], _endpoint_of(event) or self._endpoint)
            elif event["event"] == zmq.EVENT_CONNECTED and not self.connected:
                self.connected = True
                self.connects += 1
                again = " again" if self.connects > 1 else ""
                self._log.info("connected%s to the %s at %s", again, self._peer, self._endpoint)
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = False
                self._log.warning(
                    "lost the %s at %s%s", self._peer, self._endpoint, self._lost_note
                )
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._retry_at = None
            retry, self._retry = self._retry, set()
            for endpoint in retry:  # one socket may be connected to several (a broker set)
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.disconnect(endpoint)
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.connect(endpoint)

    def follow(self, endpoint: str) -> None:
        """The socket now connects to ``endpoint`` instead (its stream moved brokers)."""
        self._endpoint = endpoint
        self.connected = False
        self._retry_at = None
        self._retry.clear()

    def _refused(self, why: str, endpoint: str) -> None:
        self.refused += 1
        self._retry.add(endpoint)
        self._rlog.warning(
            "refused",
            "the %s at %s refused our handshake: %s; trying again every %g s",
            self._peer,
            endpoint,
            why,
            REFUSED_RETRY_S,
        )
        if self._retry_at is None:
            self._retry_at = time.monotonic() + REFUSED_RETRY_S

    def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        monitor.close(linger=0)


def _endpoint_of(event: Mapping[str, Any]) -> str | None:
    """The endpoint a monitor event names (libzmq gives the one connected to)."""
    raw = event.get("endpoint")
    if isinstance(raw, bytes):
        return raw.decode("utf-8", "replace") or None
    return raw if isinstance(raw, str) and raw else None


def _monitor_socket(sock: zmq.Socket[Any]) -> zmq.Socket[Any]:
    """A plain PAIR socket receiving ``sock``'s monitor events (``sock`` may be asyncio)."""
    address = f"inproc://framebroker-link-{next(_names)}"
    sock.monitor(address, _EVENTS)
    context: zmq.Context[Any] = zmq.Context.shadow(sock.context.underlying)
    monitor = context.socket(zmq.PAIR)
    monitor.connect(address)
    return monitor


def connect_watched(
    sock: zmq.Socket[Any], endpoint: str, *, peer: str = "broker", **options: Any
) -> LinkMonitor:
    """Watch ``sock`` (first, so that no event of the connection is missed), then connect
    it to ``endpoint``. The caller polls the monitor from the socket's thread and closes it
    before the socket's context is terminated."""
    link = LinkMonitor(sock, endpoint, peer=peer, **options)
    try:
        connect(sock, endpoint)
    except BaseException:
        link.close()
        raise
    return link
