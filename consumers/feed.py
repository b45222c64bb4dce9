"""FeedReceiver: the receive thread of a credit-based fan-out consumer (protocol v1.3).

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

The receive thread asks again as soon as half the window is free (on every frame with a
window of 1, right after decoding its header), and every ``HEARTBEAT_S`` while nothing
comes (the broker forgets a feed silent for its ``--worker-timeout``). It sends
``leave`` when it stops.
"""

from __future__ import annotations

import contextlib
import logging
import threading
import time
from collections.abc import Callable
from typing import Any

import zmq

from framebroker.control_protocol import decode_reply
from framebroker.errors import ProtocolError
from framebroker.ratelimit import RateLimitedLog
from framebroker.transport import connect
from framebroker.work_protocol import (
    VERSION_FEEDS,
    WorkRequest,
    encode_work_request,
    is_reply,
)

from .config import ConsumerConfig
from .credit import CreditWindow
from .receiver import POLL_MS, Receiver
from .slots import LatestSlots
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

HEARTBEAT_S = 1.0  # an idle feed repeats its request this often


class FeedReceiver(Receiver):
    """Runs in its own thread: ``run(stop)`` until ``stop`` is set. Owns no socket, but is
    the only user of ``sock`` (a connected DEALER) while it runs."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        slots: LatestSlots,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
        *,
        streams: tuple[str, ...],
        name: str,
        window: CreditWindow | None = None,
    ) -> None:
        super().__init__(sock, slots, stats, bad_input)
        self.window = window or CreditWindow()
        self._streams = streams
        self._name = name
        self.received = 0  # frames received on this socket
        self.requests = 0
        self._granted = 0  # frames asked for so far: received at the last ask + its credit
        self._asked_at = 0.0

    def run(self, stop: threading.Event) -> None:
        sock = self._sock
        try:
            self._ask(time.monotonic())
            while not stop.is_set():
                try:
                    message = sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    if time.monotonic() - self._asked_at >= HEARTBEAT_S:
                        self._ask(time.monotonic())
                    sock.poll(POLL_MS)
                    continue
                self.handle_message(message.buffer)
        except zmq.ZMQError as exc:
            if not stop.is_set():
                self.error = exc
                log.error("feed receive failed: %s", exc)
        except BaseException as exc:  # a bug: report it to run() rather than die silently
            self.error = exc
            log.exception("feed receive thread failed")
        finally:
            self.leave()

    def handle_message(self, data: memoryview) -> None:
        """One message from the work port: a frame (ask for more, then offer it) or a
        refusal."""
        if is_reply(data):
            self._refused(data)
            return
        self.received += 1
        frame = self.handle(data)
        if frame is None:
            window = self.window.arrived(time.monotonic_ns(), len(data))
        else:
            delay = frame.t_received - frame.t_capture
            window = self.window.arrived(time.monotonic_ns(), len(data), frame.stream, delay)
        if self._granted - self.received <= window - max(1, window // 2):
            self._ask(time.monotonic())

    def leave(self) -> None:
        """Tell the broker this feed is gone (best effort, never blocks)."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send(encode_work_request(WorkRequest(op="leave")), zmq.NOBLOCK)

    def _ask(self, now: float) -> None:
        credit = self.window.window
        request = WorkRequest(
            op="feed",
            streams=self._streams,
            credit=credit,
            received=self.received,
            name=self._name,
            version=VERSION_FEEDS,
        )
        with contextlib.suppress(zmq.Again):  # not connected yet: the next heartbeat
            self._sock.send(encode_work_request(request), zmq.NOBLOCK)
            self.requests += 1
        self._granted = self.received + credit
        self._asked_at = now

    def _refused(self, data: memoryview) -> None:
        try:
            reason = decode_reply(data).get("error", "no reason given")
        except ProtocolError as exc:
            reason = f"an unreadable reply ({exc})"
        self._bad_input.warning(
            "refused",
            "the broker refused feed %s: %s (a broker older than protocol 1.3 does not "
            "serve feeds: upgrade it or use --plain-sub)",
            self._name,
            reason,
        )


def connect_receiver(
    make_socket: Callable[..., zmq.Socket[Any]],
    config: ConsumerConfig,
    slots: LatestSlots,
    stats: ConsumerStats,
    bad_input: RateLimitedLog,
) -> Receiver:
    """The receive side of a fan-out consumer, connected: a feed on the broker's work
    port (the default), or with ``config.plain_sub`` a SUB on its publish port.

    ``make_socket(kind, **options)`` makes a socket the caller tracks and closes.
    """
    security = config.security
    if config.plain_sub:
        sub = make_socket(zmq.SUB)
        for prefix in config.subscriptions():
            sub.setsockopt(zmq.SUBSCRIBE, prefix)
        security.secure(sub, "broker")
        connect(sub, config.publish)
        return Receiver(sub, slots, stats, bad_input)
    dealer = make_socket(zmq.DEALER, linger_ms=0)
    security.secure(dealer, "broker")
    connect(dealer, config.work)
    return FeedReceiver(dealer, slots, stats, bad_input, streams=config.streams, name=config.name)


def source_of(config: ConsumerConfig) -> str:
    """Where a consumer's frames come from, for its log lines."""
    if config.group is not None:
        return f"{config.work} as a worker of group {config.group}"
    if config.plain_sub:
        return f"{config.publish} (plain SUB)"
    return f"{config.work} (feed, by credit)"
