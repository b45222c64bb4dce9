"""CreditWindow: how many frames a feed asks for, so the path never holds a backlog.

A feed (protocol v1.6) gets frames only as credit allows. One frame of credit can never
build a queue, but it costs a round trip per frame, which caps a fast path (loopback:
a few thousand frames a second, less than 500 streams offer). So the window adapts to
what the path delivers, with one rule and no clock shared with the producer:

    window = frames the path delivered in the last ``TARGET_S`` at the measured rate
           = rate (bytes/s over the last ~0.5 s) x TARGET_S / mean frame size,
    clamped to 1 .. MAX_FRAMES and to MAX_BYTES of frames, growing at most 2x an arrival.

Frames in flight then take at most about ``TARGET_S`` to drain, whatever the link: that
is the most a frame can wait behind the others (queueing), on top of its own transfer.

- Slow link (3 Mbit/s, 27 kB frames, 72 ms each): the path delivers < 1 frame per 50 ms,
  so the window stays 1: one frame in flight, the freshest the broker has.
- Fast path, window-limited: with W frames in flight and a round trip of R, the rate is
  W/R frames/s and the next window W x TARGET_S / R; it doubles while R < TARGET_S/2 and
  stops at MAX_FRAMES, so a loopback consumer runs with 16 frames of credit.
- A link that turns slow: the rate falls with it and the window follows at the next
  arrival; what was in flight drains at the new rate, bounded by MAX_BYTES.

The rate counts time when the source had nothing to send as well, so it can only err low
(a smaller window than the path could take), never high. But it can be fooled by a burst:
a consumer starved of CPU reads several queued frames back to back, which looks like a
fast path. So a second rule watches the frames' own delay, ``arrival - t_capture``,
against its minimum for the stream over the last ~10 s (which absorbs any clock offset
between the hosts and the stream's fixed latency): a frame that arrives more than
``TARGET_S`` later than that queued somewhere, and the window halves and does not grow
again for a second. Pure: times are passed in.
"""

from __future__ import annotations

from collections import deque

from framebroker.work_protocol import MAX_CREDIT

TARGET_S = 0.05  # what the frames in flight may take to drain at the measured rate
MAX_FRAMES = MAX_CREDIT  # the broker uses no more credit than this
MAX_BYTES = 32 << 20  # frames in flight, in bytes: 5 raw 1080p BGR frames
RATE_WINDOW_NS = 500_000_000  # the rate is measured over the arrivals of the last 0.5 s
MIN_SAMPLES = 3  # arrivals needed before the window moves from 1
BASE_PERIOD_NS = 5_000_000_000  # a stream's base delay is its minimum over 1-2 periods
HOLD_NS = 1_000_000_000  # after a late frame, the window does not grow for this long
MAX_STREAMS_TRACKED = 4096  # base delays kept (the oldest period's are dropped beyond)


class CreditWindow:
    """The credit a feed asks for: ``window`` frames, updated on each arrival."""

    def __init__(
        self,
        *,
        target_s: float = TARGET_S,
        max_frames: int = MAX_FRAMES,
        max_bytes: int = MAX_BYTES,
    ) -> None:
        self.target_s = target_s
        self.max_frames = max_frames
        self.max_bytes = max_bytes
        self.window = 1
        self.largest_window = 1  # for reports
        self._arrivals: deque[tuple[int, int]] = deque()  # (ns, bytes) in the rate window
        self._bytes = 0  # sum of the sizes in _arrivals
        self.mean_size = 0.0  # moving average of frame sizes
        self.late = 0  # frames that arrived late (queued), each halving the window
        # stream -> minimum delay this period and the last; rotated every BASE_PERIOD_NS
        self._base: dict[str, list[int]] = {}
        self._period_end = 0
        self._hold_until = 0

    def arrived(self, now_ns: int, size: int, stream: str = "", delay_ns: int | None = None) -> int:
        """Note a frame of ``size`` bytes that arrived at ``now_ns`` (monotonic), its
        stream and ``delay_ns`` (arrival minus capture, wall clocks); the new window."""
        if delay_ns is not None and self._late(now_ns, stream, delay_ns):
            self.late += 1
            self._hold_until = now_ns + HOLD_NS
            self.window = max(1, self.window // 2)
        arrivals = self._arrivals
        arrivals.append((now_ns, size))
        self._bytes += size
        while len(arrivals) > MIN_SAMPLES and now_ns - arrivals[0][0] > RATE_WINDOW_NS:
            self._bytes -= arrivals.popleft()[1]
        self.mean_size = size if not self.mean_size else self.mean_size * 0.875 + size * 0.125
        if len(arrivals) < MIN_SAMPLES:
            return self.window
        span_s = (now_ns - arrivals[0][0]) / 1e9
        # bytes that arrived after the first one, over the time since it arrived
        rate = (self._bytes - arrivals[0][1]) / span_s if span_s > 0 else float("inf")
        mean = max(self.mean_size, 1.0)
        fit = rate * self.target_s / mean
        cap = min(self.max_frames, max(1, int(self.max_bytes // mean)))
        wanted = max(1, min(cap, int(fit) if fit < cap else cap))
        if now_ns < self._hold_until:
            wanted = min(wanted, self.window)
        self.window = min(wanted, self.window * 2)
        self.largest_window = max(self.largest_window, self.window)
        return self.window

    def _late(self, now_ns: int, stream: str, delay_ns: int) -> bool:
        """Whether this frame arrived ``target_s`` later than its stream's base delay."""
        if now_ns >= self._period_end:
            self._period_end = now_ns + BASE_PERIOD_NS
            if len(self._base) > MAX_STREAMS_TRACKED:
                self._base.clear()
            for mins in self._base.values():
                mins[0], mins[1] = mins[1], 1 << 62
        found = self._base.get(stream)
        if found is None:
            self._base[stream] = [delay_ns, delay_ns]
            return False
        found[1] = min(found[1], delay_ns)
        return delay_ns - min(found) > self.target_s * 1e9


class FeedCredit:
    """One broker's side of a feed: its window, the frames received and the credit granted.

    The consumer's feed (a thread) and the viewer's (the event loop) keep one per broker of
    the set; the rules of when to ask and how the set splits a window live here once.
    """

    def __init__(self) -> None:
        self.window = CreditWindow()
        self.received = 0  # messages received from this broker
        self.granted = 0  # frames asked for so far: received at the last ask + its credit
        self.asked_at = float("-inf")

    def arrived(
        self, now_ns: int, size: int, stream: str = "", delay_ns: int | None = None
    ) -> bool:
        """Count one message from the broker (``CreditWindow.arrived``'s arguments);
        whether to ask again now: half the window is free (every frame with a window of 1)."""
        self.received += 1
        window = self.window.arrived(now_ns, size, stream, delay_ns)
        return self.granted - self.received <= window - max(1, window // 2)

    def ask(self, now: float) -> int:
        """Note a request made at ``now`` (monotonic s); the credit it carries."""
        credit = self.window.window
        self.granted = self.received + credit
        self.asked_at = now
        return credit

    def share(self, brokers: int) -> None:
        """A set of ``brokers``: this one may hold 1/N of one window's frames and bytes
        (at least one frame), so the consumer never holds more than a window in flight."""
        self.window.max_frames = max(1, MAX_FRAMES // brokers)
        self.window.max_bytes = MAX_BYTES // brokers
