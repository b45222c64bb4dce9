"""PublishBound: what one plain subscriber can make the broker hold, in bytes as in frames.

The publish port is an ``XPUB``: it queues up to ``SNDHWM`` messages for each subscriber
and, past that, drops the newest for that subscriber alone. libzmq bounds that queue in
messages only, and 1000 raw 1080p frames are 6 GB. So the broker derives the frame
bound from a byte cap: ``SNDHWM = clamp(max_bytes // largest frame, 1, max_frames)``,
where the largest frame is the largest forwarded in the last second (a larger one lowers
the bound at once, before it is queued; the bound rises again a second after large frames
stop). libzmq applies a new ``SNDHWM`` to the pipes of subscribers already connected
(``socket_base_t::update_pipe_options``) but gives new connections the value the socket
had at bind time, so the broker sets it again on the tick (100 ms) after subscriptions
arrive (:meth:`PublishBound.subscribed`). A slow subscriber's queue is then held under
``max_bytes`` plus what its kernel socket buffer takes.

Drops at the HWM are silent in libzmq (no counter, no event). To see them the socket
runs with ``ZMQ_XPUB_NODROP``: a send that would overflow a matching subscriber's queue
fails with ``EAGAIN`` instead; that is counted (``publish_overflows``) and logged
(rate-limited), and the same frame is sent once more in lossy mode, so every other
subscriber still gets it and the full one alone misses it. libzmq then takes the full
subscriber out of the send set until it has read its queue down to the low-water mark,
and the frames it misses meanwhile are invisible to the broker: so the counter counts
*overflows* (each the start of a run of dropped frames for one subscriber), not frames.
The cost is paid only on an overflow; the hot path is one non-blocking send, as before.
Measured (pyzmq 27, libzmq 4.3.5): a subscriber that stops reading 300 frames of 1 MB
raised the process's RSS by 288 MB with ``SNDHWM`` 1000 and by 18 MB once it was lowered
to 10 on the existing pipe.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.broker")

WINDOW_NS = 1_000_000_000  # the largest frame is remembered this long


class PublishBound:
    """Sends on the publish socket; keeps its ``SNDHWM`` within ``max_bytes``."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        *,
        max_frames: int,
        max_bytes: int,
        rlog: RateLimitedLog,
    ) -> None:
        self._sock = sock
        self.max_frames = max_frames
        self.max_bytes = max_bytes  # 0: no byte cap, ``max_frames`` only
        self._rlog = rlog
        self.largest = 0  # the frame size the bound is computed from
        self._window_largest = 0  # the largest frame since the window began
        self._window_end = 0
        self.hwm = max_frames
        self._reapply = False
        self.overflows = 0  # times a plain subscriber's queue was full (then it misses frames)
        sock.setsockopt(zmq.SNDHWM, max_frames)
        sock.setsockopt(zmq.XPUB_NODROP, 1)

    def send(self, frame: Any, size: int) -> None:
        """Send one frame message (zero copy) to every matching subscriber with room."""
        if size > self._window_largest:
            self._window_largest = size
            if size > self.largest:
                self._set_largest(size)
        try:
            self._sock.send(frame, zmq.NOBLOCK, copy=False)
        except zmq.Again:
            self._overflow(frame, size)

    def _overflow(self, frame: Any, size: int) -> None:
        """A matching subscriber's queue is full: count it, then send to the others."""
        self.overflows += 1
        self._rlog.warning(
            "publish-full",
            "a plain subscriber is not keeping up: its queue holds %d frames (byte cap %d, "
            "frames of up to %d bytes), so frames are dropped for it (%d overflows so far); "
            "credit-based consumers (the default) never queue",
            self.hwm,
            self.max_bytes,
            self.largest,
            self.overflows,
        )
        sock = self._sock
        sock.setsockopt(zmq.XPUB_NODROP, 0)
        try:
            sock.send(frame, zmq.NOBLOCK, copy=False)
        finally:
            sock.setsockopt(zmq.XPUB_NODROP, 1)

    def subscribed(self) -> None:
        """A subscription arrived, perhaps from a new subscriber: bound it at the next tick.

        libzmq gives a new connection the ``SNDHWM`` the socket had when it was *bound*
        (the listener keeps a copy of the options); only a ``setsockopt`` reaches pipes
        that exist. So the option is set again on the tick after subscriptions came (at
        most every 100 ms: each call sends a command to every subscriber's pipe, and a
        flood of them crashed libzmq 4.3.5 in tests/test_limits.py's subscription flood).
        """
        self._reapply = True

    def tick(self, now: int) -> None:
        """Once the window ends, base the bound on the largest frame seen in it."""
        if self._reapply:
            self._reapply = False
            self._sock.setsockopt(zmq.SNDHWM, self.hwm)
        if now < self._window_end:
            return
        self._window_end = now + WINDOW_NS
        if 0 < self._window_largest < self.largest:
            self._set_largest(self._window_largest)
        self._window_largest = 0

    def _set_largest(self, size: int) -> None:
        self.largest = size
        hwm = self.max_frames
        if self.max_bytes:
            hwm = max(1, min(hwm, self.max_bytes // max(size, 1)))
        if hwm != self.hwm:
            self.hwm = hwm
            self._sock.setsockopt(zmq.SNDHWM, hwm)  # existing subscribers' pipes too
            log.debug("publish queue bound: %d frames of up to %d bytes", hwm, size)
