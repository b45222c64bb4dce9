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
from collections.abc import Callable
from typing import Any

import zmq

from framebroker.errors import ProtocolError
from framebroker.link import LinkMonitor
from framebroker.protocol import decode_frame, is_system_message
from framebroker.ratelimit import RateLimitedLog
from framebroker.shm_protocol import is_beacon, is_descriptor_message

from .frame import Frame
from .resolver import FrameResolver
from .slots import LatestSlots, Offer
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

POLL_MS = 100  # how long one wait for input lasts; bounds how fast stop takes effect
LINK_CHECK_S = 0.5  # how often an idle receiver reads its connection monitor


class Receiver:
    """Runs in its own thread: ``run(stop)`` until ``stop`` is set. Owns no socket.

    ``link``: the socket's connection monitor, polled here (the thread that uses the
    socket) while nothing arrives, so a broker that refused our handshake is tried again.
    """

    def __init__(
        self,
        sock: zmq.Socket[Any] | None,
        slots: LatestSlots,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
        tick: Callable[[], None] | None = None,
        *,
        link: LinkMonitor | None = None,
        shm: bool = False,
        fallback: tuple[bytes, ...] = (),
    ) -> None:
        self._sock = sock
        self._tick = tick  # called in this thread each turn: a broker set's connect/disconnect
        self._link = link  # polled at idle moments: a refused handshake is retried
        self._link_due = 0.0
        self._slots = slots
        self._stats = stats
        self._bad_input = bad_input
        # shared memory: descriptors name frames in local segments (consumers/resolver.py)
        self.resolver = (
            FrameResolver(self._subscribe, self._unsubscribe, stats, fallback) if shm else None
        )
        self.error: BaseException | None = None  # why the thread ended early, if it did

    def run(self, stop: threading.Event) -> None:
        resolver, sock = self.resolver, self._sock
        assert sock is not None, "a plain receiver reads its SUB socket"
        try:
            while not stop.is_set():
                if self._tick is not None:
                    self._tick()
                if resolver is not None:
                    resolver.check()
                try:
                    message = sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    self._check_link()
                    sock.poll(POLL_MS)
                    continue
                self.handle(message.buffer)
        except zmq.ZMQError as exc:
            if not stop.is_set():
                self.error = exc
                log.error("receive failed: %s", exc)
        except BaseException as exc:  # a bug: report it to run() rather than die silently
            self.error = exc
            log.exception("receive thread failed")
        finally:
            if resolver is not None:
                resolver.close()

    def _subscribe(self, topic: bytes) -> None:
        if self._sock is not None:
            self._sock.setsockopt(zmq.SUBSCRIBE, topic)

    def _unsubscribe(self, topic: bytes) -> None:
        if self._sock is not None:
            self._sock.setsockopt(zmq.UNSUBSCRIBE, topic)

    def _check_link(self) -> None:
        """Read the connection monitor now and then (idle moments only, at most every
        ``LINK_CHECK_S``): nothing on the frame path."""
        now = time.monotonic()
        if self._link is not None and now >= self._link_due:
            self._link_due = now + LINK_CHECK_S
            self._link.poll()

    def handle(self, data: memoryview) -> Frame | None:
        """Decode one message and offer it to the slots; count what happened. The frame
        (from the message or the shared memory it describes), or None for anything else."""
        if is_system_message(data):  # the broker's own topics: not frames
            if self.resolver is not None and (is_descriptor_message(data) or is_beacon(data)):
                return self._resolve(self.resolver, data)
            return None
        self._stats.received += 1
        try:
            message = decode_frame(data)
        except ProtocolError as exc:
            self._malformed(data, exc)
            return None
        frame = Frame.from_message(message, time.time_ns())
        self._offer(frame)
        return frame

    def _resolve(self, resolver: FrameResolver, data: memoryview) -> Frame | None:
        """A descriptor: a frame read from shared memory, or a stream's path decided."""
        try:
            frame = resolver.resolve(data, time.time_ns())
        except ProtocolError as exc:
            self._malformed(data, exc)
            return None
        if frame is not None:
            self._stats.received += 1
            self._offer(frame)
        return frame

    def _malformed(self, data: memoryview, exc: ProtocolError) -> None:
        self._stats.malformed += 1
        self._bad_input.warning(
            "malformed", "dropped malformed message (%d bytes): %s", len(data), exc
        )

    def _offer(self, frame: Frame) -> None:
        outcome = self._slots.offer(frame)
        if outcome is Offer.REPLACED:
            self._stats.skipped += 1
        elif outcome is Offer.DUPLICATE:
            self._stats.duplicates += 1
