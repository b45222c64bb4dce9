"""Replay: a recorded stream sent again with its original timing (or faster, or slower).

Frame ``i`` is sent at ``t0 + (capture_i - capture_first) / speed`` on the monotonic
clock, where ``t0`` is when playback (or the current loop) began: a schedule, not a chain
of sleeps, so small delays never add up. The payload is sent as recorded (a JPEG is never
re-encoded); the sender gives the frame a new session, seq and capture time (a replay is a
new run of the stream) and keeps the recorded ones in ``meta`` (:data:`ORIGINAL_META`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

from framebroker.protocol import FrameHeader, FrameMessage
from framebroker.recording import RecordedStream, TimeSpec

log = logging.getLogger("framebroker.producers.replay")

# meta keys a replayed frame carries: the recorded frame's seq, session and capture time
ORIGINAL_META = ("orig_seq", "orig_session", "orig_t_capture")
SPIN_S = 0.004  # the last moments before a frame are spent polling: a sleeping process
# wakes late on a busy machine, a polling one (yielding) is already running


def original_meta(header: FrameHeader) -> Mapping[str, Any]:
    """The recorded frame's meta plus its seq, session and capture time."""
    return {
        **header.meta,
        "orig_seq": header.seq,
        "orig_session": header.session,
        "orig_t_capture": header.t_capture,
    }


def play(
    stream: RecordedStream,
    send: Callable[[FrameMessage], object],
    *,
    speed: float = 1.0,
    start: TimeSpec | None = None,
    loop: bool = False,
    stop: threading.Event | None = None,
) -> int:
    """Send the frames of ``stream`` through ``send`` on their schedule; the count sent.

    ``start`` seeks (seconds from the recording's start, or a moment); ``loop`` starts
    over at ``start`` after the last frame; ``stop`` ends playback early.
    """
    if not speed > 0:
        raise ValueError(f"speed must be greater than 0, got {speed!r}")
    stop = stop or threading.Event()
    start_ns = start.resolve(stream.info().start_ns) if start is not None else None
    sent = 0
    while not stop.is_set():
        sent_this_pass = 0
        origin: tuple[float, int] | None = None  # (monotonic start, first capture time)
        for frame in stream.frames(start_ns):
            t = frame.t_capture
            if origin is None:
                origin = (time.monotonic(), t)
            due = origin[0] + (t - origin[1]) / 1e9 / speed
            if not _wait_until(due, stop):
                return sent
            send(frame.message)
            sent += 1
            sent_this_pass += 1
        if not loop or sent_this_pass == 0:
            break
        log.info("replay of %r: looping after %d frames", stream.stream, sent_this_pass)
    return sent


def _wait_until(due: float, stop: threading.Event) -> bool:
    """Sleep until ``due`` (monotonic); False if ``stop`` was set meanwhile."""
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return not stop.is_set()
        if left > SPIN_S:
            if stop.wait(left - SPIN_S):
                return False
        elif stop.is_set():
            return False
        else:
            time.sleep(0)  # yield the GIL while polling the last moments
