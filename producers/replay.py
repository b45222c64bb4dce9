"""Replay: a recorded stream sent again with its original timing (or faster, or slower).

Frame ``i`` is sent at ``t0 + (capture_i - capture_first) / speed`` on the monotonic
clock, where ``t0`` is when playback (or the current loop) began: a schedule, not a chain
of sleeps, so small delays never add up. A loop's next pass starts one mean frame interval
after the last frame of the pass before. The payload is sent as recorded (a JPEG is never
re-encoded); the sender gives the frame a new session, seq and capture time (a replay is a
new run of the stream) and keeps the recorded ones in ``meta`` (:data:`ORIGINAL_META`).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from framebroker.protocol import FrameHeader, FrameMessage
from framebroker.recording import RecordedStream, TimeSpec

log = logging.getLogger("framebroker.producers.replay")

# meta keys a replayed frame carries: the recorded frame's seq, session and capture time
ORIGINAL_META = ("orig_seq", "orig_session", "orig_t_capture")
SPIN_S = 0.002  # the last 2 ms before a frame are spent polling (see _wait_until)
SINGLE_FRAME_LOOP_S = 1.0  # a looped recording of one frame repeats it this often


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
    spin: float = SPIN_S,
) -> int:
    """Send the frames of ``stream`` through ``send`` on their schedule; the count sent.

    ``start`` seeks (seconds from the recording's start, or a moment); ``loop`` starts
    over at ``start`` after the last frame; ``stop`` ends playback early; ``spin``: the
    seconds before each frame spent polling instead of sleeping (:func:`_wait_until`).
    """
    if not speed > 0:
        raise ValueError(f"speed must be greater than 0, got {speed!r}")
    stop = stop or threading.Event()
    start_ns = start.resolve(stream.info().start_ns) if start is not None else None
    sent = 0
    begin = time.monotonic()  # when the next pass starts
    while not stop.is_set():
        pass_ = _play_pass(stream, send, start_ns, begin, speed, stop, spin)
        sent += pass_.sent
        if pass_.stopped or not loop or pass_.sent == 0:
            break
        begin = pass_.last_due + pass_.mean_interval_s / speed
        log.info("replay of %r: looping after %d frames", stream.stream, pass_.sent)
    return sent


@dataclass(frozen=True)
class _Pass:
    sent: int
    stopped: bool
    last_due: float  # monotonic
    mean_interval_s: float  # between the pass's frames as recorded


def _play_pass(
    stream: RecordedStream,
    send: Callable[[FrameMessage], object],
    start_ns: int | None,
    begin: float,
    speed: float,
    stop: threading.Event,
    spin: float,
) -> _Pass:
    """One pass over the recording from ``start_ns``, its first frame due at ``begin``.

    A loop's next pass begins one mean frame interval after this pass's last frame, as a
    looping video does: sent at once, the first frame would leave together with the last,
    and a conflating PUB keeps only one of two frames sent together.
    """
    sent, first, last, due = 0, 0, 0, begin
    for frame in stream.frames(start_ns):
        t = frame.t_capture
        if sent == 0:
            first = t
        due = begin + (t - first) / 1e9 / speed
        if not _wait_until(due, stop, spin):
            return _Pass(sent, True, due, 0.0)
        send(frame.message)
        sent += 1
        last = t
    mean = (last - first) / 1e9 / (sent - 1) if sent > 1 else SINGLE_FRAME_LOOP_S
    return _Pass(sent, False, due, mean)


def _wait_until(due: float, stop: threading.Event, spin: float = SPIN_S) -> bool:
    """Wait until ``due`` (monotonic); False if ``stop`` was set meanwhile.

    Sleeps until ``spin`` seconds before ``due``, then polls the clock, yielding the CPU
    (``sched_yield``) between looks. Woken by a timer, a process waits for a CPU on a busy
    machine; one that polls is usually running already. The cost is the polling: about
    2 % of a core per replay at 30 fps against 0.9 % sleeping only (docs/benchmarks.md,
    scenario 8: p95 interval error 0.8 ms polling 2 ms, 2.0 ms sleeping only). Polling
    without yielding was worse on a busy machine: the process uses up its CPU share.
    """
    while True:
        left = due - time.monotonic()
        if left <= 0:
            return not stop.is_set()
        if left > spin:
            if stop.wait(left - spin):
                return False
        elif stop.is_set():
            return False
        else:
            time.sleep(0)  # sched_yield: let others run, stay runnable
