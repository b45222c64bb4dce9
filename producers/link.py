"""Say when the producer's connection to the broker comes and goes.

A PUB socket never tells its user that nobody is listening: frames are silently dropped
while the broker is down. A ZeroMQ socket monitor reports connect and disconnect events;
this logs them once per change.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq
from zmq.utils.monitor import recv_monitor_message

log = logging.getLogger("framebroker.producers.link")

_EVENTS = zmq.EVENT_CONNECTED | zmq.EVENT_DISCONNECTED


class LinkMonitor:
    """Watches one socket's connection; call :meth:`poll` now and then, :meth:`close` at end."""

    def __init__(self, sock: zmq.Socket[Any], endpoint: str) -> None:
        self._sock = sock
        self._endpoint = endpoint
        self._monitor: zmq.Socket[Any] | None = sock.get_monitor_socket(_EVENTS)
        self.connected = False
        self.connects = 0

    def poll(self) -> None:
        """Handle the events that arrived (never blocks)."""
        monitor = self._monitor
        if monitor is None:
            return
        while monitor.poll(0):
            event = recv_monitor_message(monitor)
            if not isinstance(event, dict):
                continue
            if event["event"] == zmq.EVENT_CONNECTED and not self.connected:
                self.connected = True
                self.connects += 1
                again = " again" if self.connects > 1 else ""
                log.info("connected%s to the broker at %s", again, self._endpoint)
            elif event["event"] == zmq.EVENT_DISCONNECTED and self.connected:
                self.connected = False
                log.warning(
                    "lost the broker at %s; frames are dropped until it is back", self._endpoint
                )

    def close(self) -> None:
        monitor, self._monitor = self._monitor, None
        if monitor is None:
            return
        with contextlib.suppress(zmq.ZMQError):
            self._sock.disable_monitor()
        monitor.close(linger=0)
