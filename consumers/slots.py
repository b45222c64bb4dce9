"""LatestSlots: one slot per stream holding only its newest unprocessed frame.

The receive thread ``offer()``s every frame; the processing loop ``take()``s. Taking picks,
among streams with a pending frame whose ``fps`` cap allows, the one processed least
recently, so a busy stream cannot starve a quiet one. Frames not newer than the newest
seen (:func:`framebroker.ordering.is_newer`) are refused as duplicates: the broker's
last-value cache re-sends its newest frame whenever a subscription arrives.

No sockets here: this is pure enough to test with hand-made frames and a fake clock.
"""

from __future__ import annotations

import enum
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from framebroker.ordering import is_newer

from .frame import Frame


class Offer(enum.Enum):
    """What ``offer()`` did with a frame."""

    NEW = "new"  # stored; the slot was empty
    REPLACED = "replaced"  # stored; an older unprocessed frame was dropped (skipped)
    DUPLICATE = "duplicate"  # refused: not newer than what the stream already had


@dataclass
class _Slot:
    session: int
    last_seq: int  # the newest seq seen in this session
    pending: Frame | None = None
    last_turn: int = -1  # when this stream was last taken (a take counter, not time)
    next_allowed: float = float("-inf")  # fps cap: earliest clock() for the next take


class LatestSlots:
    def __init__(
        self, fps: float | None = None, clock: Callable[[], float] = time.monotonic
    ) -> None:
        self._period = 1.0 / fps if fps else 0.0
        self._clock = clock
        self._slots: dict[str, _Slot] = {}
        self._cond = threading.Condition()  # an RLock: close() is safe from a signal handler
        self._turn = 0
        self._closed = False

    def offer(self, frame: Frame) -> Offer:
        """Store ``frame`` as its stream's newest, unless it is not newer than that."""
        with self._cond:
            slot = self._slots.get(frame.stream)
            if slot is None:
                self._slots[frame.stream] = _Slot(frame.session, frame.seq, frame)
                self._cond.notify()
                return Offer.NEW
            if not is_newer(frame.session, frame.seq, slot.session, slot.last_seq):
                return Offer.DUPLICATE
            slot.session, slot.last_seq = frame.session, frame.seq
            outcome = Offer.NEW if slot.pending is None else Offer.REPLACED
            slot.pending = frame
            self._cond.notify()
            return outcome

    def take(self, timeout: float | None = None) -> Frame | None:
        """The next frame to process, waiting up to ``timeout`` s (None: until one comes).

        Returns None on timeout or once closed.
        """
        deadline = None if timeout is None else self._clock() + timeout
        with self._cond:
            while not self._closed:
                now = self._clock()
                slot, wake_at = self._pick(now)
                if slot is not None:
                    return self._take_from(slot, now)
                if deadline is not None:
                    if now >= deadline:
                        return None
                    wake_at = min(wake_at, deadline)
                self._cond.wait(None if wake_at == float("inf") else max(0.0, wake_at - now))
            return None

    def _pick(self, now: float) -> tuple[_Slot | None, float]:
        """The eligible slot processed least recently, or (None, when one becomes eligible)."""
        best: _Slot | None = None
        wake_at = float("inf")
        for slot in self._slots.values():
            if slot.pending is None:
                continue
            if slot.next_allowed > now:
                wake_at = min(wake_at, slot.next_allowed)
            elif best is None or slot.last_turn < best.last_turn:
                best = slot
        return best, wake_at

    def _take_from(self, slot: _Slot, now: float) -> Frame:
        frame, slot.pending = slot.pending, None
        assert frame is not None
        self._turn += 1
        slot.last_turn = self._turn
        if self._period:
            # Keep to the schedule when less than one period late, so the average rate is
            # the cap; further behind, restart it from now (no burst to catch up).
            late = now - slot.next_allowed
            base = slot.next_allowed if late < self._period else now
            slot.next_allowed = base + self._period
        return frame

    def close(self) -> None:
        """Wake every ``take()``; from now on they return None."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed

    def pending(self) -> int:
        """How many streams have a frame waiting."""
        with self._cond:
            return sum(1 for slot in self._slots.values() if slot.pending is not None)

    def streams(self) -> list[str]:
        """Every stream seen so far, in order of first appearance."""
        with self._cond:
            return list(self._slots)
