"""Receiver: the thread that drains the SUB socket into the per-stream slots.

It never waits for the processor: every message is taken off the socket as it arrives
(``recv(copy=False)``, decoded in place on the message buffer) and offered to
:class:`LatestSlots`, which keeps only the newest frame per stream. That, not small
high-water marks, is what keeps frames fresh however slow the processor is.
"""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

import zmq

from framebroker.errors import ProtocolError
from framebroker.protocol import decode_frame, is_system_message
from framebroker.ratelimit import RateLimitedLog

from .frame import Frame
from .slots import LatestSlots, Offer
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

POLL_MS = 100  # how long one wait for input lasts; bounds how fast stop takes effect


class Receiver:
    """Runs in its own thread: ``run(stop)`` until ``stop`` is set. Owns no socket."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        slots: LatestSlots,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
    ) -> None:
        self._sock = sock
        self._slots = slots
        self._stats = stats
        self._bad_input = bad_input
        self.error: BaseException | None = None  # why the thread ended early, if it did

    def run(self, stop: threading.Event) -> None:
        try:
            while not stop.is_set():
                try:
                    message = self._sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    self._sock.poll(POLL_MS)
                    continue
                self.handle(message.buffer)
        except zmq.ZMQError as exc:
            if not stop.is_set():
                self.error = exc
                log.error("receive failed: %s", exc)
        except BaseException as exc:  # a bug: report it to run() rather than die silently
            self.error = exc
            log.exception("receive thread failed")

    def handle(self, data: memoryview) -> Frame | None:
        """Decode one message and offer it to the slots; count what happened. The frame,
        or None for a system message or a malformed one."""
        if is_system_message(data):  # the broker's own topics: not frames
            return None
        self._stats.received += 1
        try:
            message = decode_frame(data)
        except ProtocolError as exc:
            self._stats.malformed += 1
            self._bad_input.warning(
                "malformed", "dropped malformed message (%d bytes): %s", len(data), exc
            )
            return None
        frame = Frame.from_message(message, time.time_ns())
        outcome = self._slots.offer(frame)
        if outcome is Offer.REPLACED:
            self._stats.skipped += 1
        elif outcome is Offer.DUPLICATE:
            self._stats.duplicates += 1
        return frame
