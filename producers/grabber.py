"""The grab thread: read a source continuously and keep only the newest frame.

OpenCV's FFmpeg backend ignores ``CAP_PROP_BUFFERSIZE``, so a reader that falls behind
gets old frames; reading continuously and keeping one slot is the fix. The
:class:`Grabber` also keeps the source alive:

- a source that fails, or a live source that ends, is reopened with capped exponential
  backoff (:class:`~producers.backoff.Backoff`);
- a watchdog notices a source that stops delivering without failing (a stalled stream
  blocks inside OpenCV): after ``read_timeout`` without a frame (``open_timeout`` more
  while opening) the reader is abandoned and a fresh source is opened. The abandoned
  thread releases its source whenever OpenCV returns; a blocked read cannot be
  interrupted safely from another thread;
- a recording (file) that cannot be opened is a permanent failure; its end is a clean end.

States (``opening``, ``streaming``, ``retrying``, ``ended``, ``failed``, ``closed``) are
logged once per change, not once per attempt.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import numpy as np

from framebroker.errors import FrameBrokerError, SourceError

from .backoff import Backoff
from .source import FrameSource

log = logging.getLogger("framebroker.producers.grabber")

POLL_S = 0.1  # how often the supervisor checks the watchdog and close()
STOP_WAIT_S = 1.0  # how long close() waits for a reader in a blocking read


class GrabberState(StrEnum):
    IDLE = "idle"
    OPENING = "opening"
    STREAMING = "streaming"
    RETRYING = "retrying"
    ENDED = "ended"  # a recording reached its end: a clean end
    FAILED = "failed"  # a permanent failure; see Grabber.error
    CLOSED = "closed"


@dataclass(frozen=True, slots=True)
class Grabbed:
    """One frame as the grabber got it."""

    image: np.ndarray
    t_capture: int  # time.time_ns() when the source delivered it
    index: int  # 1, 2, ... over the grabber's life, across reopens


class Pacer:
    """Spaces reads ``1/fps`` apart on a fixed schedule; never bursts to catch up."""

    def __init__(self, fps: float) -> None:
        self.period = 1.0 / fps
        self._next: float | None = None

    def wait(self, cancel: threading.Event) -> bool:
        """Sleep until the next slot; False when ``cancel`` was set meanwhile."""
        now = time.monotonic()
        if self._next is None or now - self._next > self.period:
            self._next = now  # first frame, or fell behind: restart the schedule
        delay = self._next - now
        self._next += self.period
        return not (delay > 0 and cancel.wait(delay))


class _Reader:
    """One source instance and the thread that opens and reads it."""

    def __init__(
        self, source: FrameSource, deliver: Callable[[_Reader, np.ndarray, int], None]
    ) -> None:
        self.source = source
        self.cancel = threading.Event()
        self.done = threading.Event()
        self.opened = False
        self.ended = False  # read() returned None
        self.frames = 0
        self.error = ""
        self.exc: BaseException | None = None  # an unexpected exception, for the log
        self.last_progress = time.monotonic()
        self._deliver = deliver
        self.thread = threading.Thread(target=self._run, name="framebroker-reader", daemon=True)

    def _run(self) -> None:
        try:
            self.source.open()
            self.opened = True
            self.last_progress = time.monotonic()
            self._read_loop()
        except SourceError as exc:
            self.error = str(exc)
        except Exception as exc:  # a bug in a user's FrameSource: log it, retry
            self.error = f"{self.source.description} raised {type(exc).__name__}: {exc}"
            self.exc = exc
        finally:
            try:
                self.source.close()
            except Exception:
                log.warning("closing %s failed", self.source.description, exc_info=True)
            self.done.set()

    def _read_loop(self) -> None:
        fps = self.source.pace_fps
        pacer = Pacer(fps) if fps else None
        while not self.cancel.is_set():
            if pacer is not None and not pacer.wait(self.cancel):
                return
            image = self.source.read()
            t_capture = time.time_ns()
            if self.cancel.is_set():
                return
            if image is None:
                self.ended = True
                return
            self.frames += 1
            self.last_progress = time.monotonic()
            self._deliver(self, image, t_capture)

    def watchdog_s(self, open_timeout: float, read_timeout: float) -> float:
        """How long this reader may go without progress before it is abandoned."""
        if not self.opened:
            return open_timeout + read_timeout
        fps = self.source.pace_fps
        return max(read_timeout, 3.0 / fps) if fps else read_timeout


class Grabber:
    """Keeps the newest frame of a source; reopens it when it fails.

    ``factory`` makes a new, unopened FrameSource for each (re)open. Use ``start()``,
    then :meth:`wait_newer` from the publishing thread, and ``close()`` at the end.
    """

    def __init__(
        self,
        factory: Callable[[], FrameSource],
        *,
        open_timeout: float = 10.0,
        read_timeout: float = 5.0,
        backoff: Backoff | None = None,
    ) -> None:
        self._factory = factory
        self._open_timeout = open_timeout
        self._read_timeout = read_timeout
        self._backoff = backoff or Backoff()
        self._cond = threading.Condition()
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._reader: _Reader | None = None
        self._latest: Grabbed | None = None
        self._index = 0
        self._state = GrabberState.IDLE
        self._logged = GrabberState.IDLE
        self._error = ""
        self._finished = False
        self.failures = 0  # failed opens, lost streams and watchdog trips, in total
        self.description = "frame source"

    # --- public API ------------------------------------------------------------------

    def start(self) -> None:
        if self._thread is not None:
            return
        self._thread = threading.Thread(target=self._run, name="framebroker-grabber", daemon=True)
        self._thread.start()

    def close(self, timeout: float = 2.0) -> None:
        """Stop grabbing and release the source (waits up to ``timeout`` seconds)."""
        self._stop.set()
        if self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join(timeout)

    def wait_newer(self, after: int, timeout: float) -> Grabbed | None:
        """The newest frame if its index is above ``after``, waiting up to ``timeout``.

        Returns None on timeout and once the grabber has finished (see :attr:`finished`).
        """
        with self._cond:
            self._cond.wait_for(
                lambda: self._finished or (self._latest is not None and self._latest.index > after),
                timeout,
            )
            latest = self._latest
        return latest if latest is not None and latest.index > after else None

    @property
    def latest(self) -> Grabbed | None:
        return self._latest

    @property
    def frames(self) -> int:
        """Frames grabbed so far."""
        return self._index

    @property
    def state(self) -> GrabberState:
        return self._state

    @property
    def finished(self) -> bool:
        """True once no more frames will come: ended, failed or closed."""
        return self._finished

    @property
    def error(self) -> str:
        """Why the grabber failed for good (state ``failed``), else ""."""
        return self._error

    # --- the supervisor thread -------------------------------------------------------

    def _run(self) -> None:
        try:
            while not self._stop.is_set():
                reader = self._new_reader()
                if reader is None:
                    return
                error = self._watch(reader)
                if error is None:  # stopped, or a clean end
                    return
                if not reader.opened and not reader.source.live:
                    self._enter(GrabberState.FAILED, error, logging.ERROR)
                    self._error = error
                    return
                if not self._retry(reader, error):
                    return
        finally:
            with self._cond:
                self._finished = True
                if self._state not in (GrabberState.ENDED, GrabberState.FAILED):
                    self._state = GrabberState.CLOSED
                self._cond.notify_all()

    def _new_reader(self) -> _Reader | None:
        try:
            source = self._factory()
        except FrameBrokerError as exc:
            self._error = str(exc)
            self._enter(GrabberState.FAILED, f"cannot make the source: {exc}", logging.ERROR)
            return None
        self.description = source.description
        reader = _Reader(source, self._deliver)
        with self._cond:
            self._reader = reader
        self._enter(GrabberState.OPENING, f"opening {source.description}")
        reader.thread.start()
        return reader

    def _watch(self, reader: _Reader) -> str | None:
        """Wait for the reader to finish, trip or be stopped; the failure, or None."""
        while not reader.done.wait(POLL_S):
            if self._stop.is_set():
                reader.cancel.set()
                reader.done.wait(STOP_WAIT_S)
                return None
            idle = time.monotonic() - reader.last_progress
            limit = reader.watchdog_s(self._open_timeout, self._read_timeout)
            if idle > limit:
                reader.cancel.set()  # abandoned: it releases its source when OpenCV returns
                what = "opened" if not reader.opened else "delivered a frame"
                return f"{reader.source.description} has not {what} for {idle:.1f}s (watchdog)"
        if self._stop.is_set():
            return None
        if reader.ended:
            if not reader.source.live:
                self._enter(GrabberState.ENDED, f"{reader.source.description} ended")
                return None
            return f"{reader.source.description} ended unexpectedly"
        return reader.error or f"{reader.source.description} stopped"

    def _retry(self, reader: _Reader, error: str) -> bool:
        """Back off before the next attempt; False when closed meanwhile."""
        self.failures += 1
        if reader.frames:
            self._backoff.reset()
        delay = self._backoff.next_delay()
        self._enter(
            GrabberState.RETRYING,
            f"{error}; retrying in {delay:g}s, backing off up to {self._backoff.maximum:g}s "
            "(further attempts are logged at DEBUG level)",
            logging.WARNING,
            exc=reader.exc,
        )
        return not self._stop.wait(delay)

    def _deliver(self, reader: _Reader, image: np.ndarray, t_capture: int) -> None:
        with self._cond:
            if reader is not self._reader or reader.cancel.is_set():
                return  # an abandoned reader woke up late
            self._index += 1
            self._latest = Grabbed(image, t_capture, self._index)
            self._cond.notify_all()
        if reader.frames == 1:
            shape = "x".join(str(d) for d in (image.shape[1], image.shape[0]))
            again = ""
            if self._logged is GrabberState.RETRYING:
                again = f" again after {self._backoff.attempts} failed attempt(s)"
            self._enter(
                GrabberState.STREAMING, f"{reader.source.description} streaming{again}: {shape}"
            )

    def _enter(
        self,
        state: GrabberState,
        message: str,
        level: int = logging.INFO,
        exc: BaseException | None = None,
    ) -> None:
        """Set the state; log it only when it differs from the last state logged.

        Reopening while retrying stays part of ``retrying`` (logged at DEBUG).
        """
        with self._cond:
            self._state = state
            quiet = state is self._logged or (
                state is GrabberState.OPENING and self._logged is GrabberState.RETRYING
            )
            if not quiet:
                self._logged = state
        if quiet:
            log.debug(message)
        else:
            log.log(level, message, exc_info=exc)
