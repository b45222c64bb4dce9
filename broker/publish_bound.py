"""PublishBound: what one plain subscriber can make the broker hold, in bytes as in frames.

The publish port is an ``XPUB``: it queues up to ``SNDHWM`` messages for each subscriber
and, past that, drops the newest for that subscriber alone. libzmq bounds that queue in
messages only, and 1000 raw 1080p frames are 6 GB. The broker accepts no message larger
than ``--max-message-size``, so it bounds the queue in bytes by choosing the frame bound
once, before the port is bound::

    SNDHWM = clamp(publish_queue_bytes // max_message_size, 1, publish_hwm)

A plain subscriber that stops reading then holds at most ``SNDHWM x max_message_size <=
publish_queue_bytes`` in the broker's process (plus what its kernel socket buffers take,
a few MB). The cap is off by default (broker.config says why): 1 GiB over the default
64 MiB messages would be 16 frames for every stream, which measurably cost small-frame
fast paths; a deployment sets both (``1G`` and ``8M`` for raw 1080p: 128 frames).

**Why the bound never changes while the broker runs.** libzmq gives a connection the
options the socket had when it was *bound* (the listener keeps a copy), and a later
``setsockopt(ZMQ_SNDHWM)`` rewrites the limits of every live pipe at once
(``socket_base_t::update_pipe_options``; libzmq's own manual says HWM options take effect
only for subsequent binds and connects). Doing that while frames flow did harm here: a
reading subscriber whose pipe limit was lowered below what it had queued stalled for
good, and re-applying it on every subscription of a 10,000-subscription flood crashed
libzmq 4.3.5. A fixed bound chosen from a hard maximum is exact and touches no live pipe.

Drops at the HWM are silent in libzmq (no counter, no event). To see them the socket
runs with ``ZMQ_XPUB_NODROP``: a send that would overflow a matching subscriber's queue
fails with ``EAGAIN`` instead; that is counted (``publish_overflows``) and logged
(rate-limited), and the same frame is sent once more in lossy mode, so every other
subscriber still gets it and the full one alone misses it. The socket then *stays* lossy
until the broker's next tick (100 ms), when ``XPUB_NODROP`` is set again: a subscriber
that stays slow costs one overflow per tick, not two socket options and a second send per
frame (measured: per-frame re-arming halved the broker's 10 kB throughput to a saturated
subscriber). So the counter counts *overflow episodes*, at most one per tick, each the
start of a run of frames dropped for the full subscribers; libzmq drops the rest
silently. ``XPUB_NODROP`` is read by libzmq on each send (not per pipe), so toggling it
is safe. The hot path is one non-blocking send, as before.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.broker")


def publish_hwm(max_frames: int, max_bytes: int, max_message_size: int) -> int:
    """The frames one plain subscriber may queue: ``max_frames``, lowered so that as many
    of the largest message the broker accepts fit in ``max_bytes`` (0: no byte cap)."""
    if not max_bytes:
        return max_frames
    return max(1, min(max_frames, max_bytes // max(1, max_message_size)))


class PublishBound:
    """Sends on the publish socket (set up before it is bound); counts overflows."""

    def __init__(self, sock: zmq.Socket[Any], *, hwm: int, max_bytes: int, rlog: RateLimitedLog):
        self._sock = sock
        self.hwm = hwm
        self.max_bytes = max_bytes
        self._rlog = rlog
        self.overflows = 0  # overflow episodes (at most one per tick): frames were dropped
        self._lossy = False  # after an overflow, until the next tick
        sock.setsockopt(zmq.SNDHWM, hwm)
        sock.setsockopt(zmq.XPUB_NODROP, 1)

    def send(self, message: Any, copy: bool = False) -> None:
        """Send one message to every matching subscriber with room (``socket.send``'s
        shape, so it stands in for it)."""
        try:
            self._sock.send(message, zmq.NOBLOCK, copy=copy)
        except zmq.Again:
            self._overflow(message, copy)

    def tick(self) -> None:
        """Watch for overflows again (called on the broker's tick, every 100 ms)."""
        if self._lossy:
            self._lossy = False
            self._sock.setsockopt(zmq.XPUB_NODROP, 1)

    def _overflow(self, message: Any, copy: bool) -> None:
        """A matching subscriber's queue is full: count it, send to the others, and stay
        lossy until the next tick."""
        self.overflows += 1
        self._lossy = True
        self._rlog.warning(
            "publish-full",
            "a plain subscriber is not keeping up: its queue of %d frames (at most %d bytes) "
            "is full, so frames are dropped for it (%d overflows so far); credit-based "
            "consumers (the default) never queue",
            self.hwm,
            self.max_bytes,
            self.overflows,
        )
        self._sock.setsockopt(zmq.XPUB_NODROP, 0)
        self._sock.send(message, zmq.NOBLOCK, copy=copy)
