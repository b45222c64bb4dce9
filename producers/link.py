"""Say when the producer's connection to the broker comes and goes.

A PUB socket never tells its user that nobody is listening: frames are silently dropped
while the broker is down. A ZeroMQ socket monitor reports connect and disconnect events;
this logs them once per change. It also reports a handshake the broker refused (CURVE:
our key not allowed, or one side without CURVE); libzmq never retries those, so this
reconnects every ``REFUSED_RETRY_S`` seconds: adding our key to the broker's allow-list
lets the producer in without a restart.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

from framebroker.ratelimit import RateLimitedLog
from framebroker.security import FAILURE_EVENTS, refusal

log = logging.getLogger("framebroker.producers.link")

# a broken handshake (no detail) is left to libzmq, which reconnects by itself
_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED | FAILURE_EVENTS
REFUSED_RETRY_S = 5.0


class LinkMonitor:
    """Watches one socket's connection; call :meth:`poll` now and then, :meth:`close` at end."""

    def __init__(self, sock: zmq.Socket[Any], endpoint: str) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._monitor: zmq.Socket[Any] | None = sock.get_monitor_socket(_EVENTS)
        self.connected = False
        self.connects = 0
        self.refused = 0  # handshakes the broker refused
        self._retry_at: float | None = None
        self._rlog = RateLimitedLog(log, interval=30.0)

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
                self.connected = False  # the TCP connection came, the broker did not
                self._refused(refused[0])
            elif event["event"] == zmq.EVENT_CONNECTED and not self.connected:
                self.connected = True
                self.connects += 1
                again = " again" if self.connects > 1 else ""
                log.info("connected%s to the broker at %s", again, self._endpoint)
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = False
                log.warning(
                    "lost the broker at %s; frames are dropped until it is back", self._endpoint
                )
        if self._retry_at is not None and time.monotonic() >= self._retry_at:
            self._retry_at = None
            with contextlib.suppress(zmq.ZMQError):
                self._sock.disconnect(self._endpoint)
            with contextlib.suppress(zmq.ZMQError):
                self._sock.connect(self._endpoint)

    def follow(self, endpoint: str) -> None:
        """The socket now connects to ``endpoint`` instead (its stream moved brokers)."""
        self._endpoint = endpoint
        self.connected = False
        self._retry_at = None

    def _refused(self, why: str) -> None:
        self.refused += 1
        self._rlog.warning(
            "refused",
            "the broker at %s refused our handshake: %s; trying again every %g s",
            self._endpoint,
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
