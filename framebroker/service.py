"""The one lifecycle of every long-running service: Broker, Sink, Producer, Consumer, Viewer.

::

    service = Broker(config)     # nothing opened, no thread started
    service.start()              # binds / connects; errors (port taken...) raise here
    service.run()                # blocks until stopped; starts first if not started
    service.stop()               # from a signal handler or any thread: run() returns soon
    service.close()              # stop, wait for run() to finish, release sockets and threads

- ``start()`` is idempotent: a second call does nothing. So is ``close()``.
- ``stop()`` only sets a flag (and wakes the loop): it never blocks and takes no lock, so
  it is the one to call from a signal handler. It may come before ``start()``: ``run()``
  then returns at once.
- ``close()`` may come from any thread; it waits for ``run()`` to return (up to
  ``CLOSE_TIMEOUT_S``), except when called from inside ``run()`` itself (a processor or
  callback), where it only stops. A closed service stays closed: ``start()`` and ``run()``
  then do nothing. A second ``run()`` while one runs raises.
- ``with service:`` is ``start()`` on entry and ``close()`` on exit, for every service.
- ``run_in_thread()`` is the one way to run in the background (tests, notebooks): it starts
  in the caller's thread, so binding errors raise there, then runs ``run()`` in a daemon
  thread (``service.thread``); ``close()`` stops and joins it. It returns the service::

      with Broker(config).run_in_thread() as broker:
          ...                      # serving on broker.publish_endpoint

  An exception that ends ``run()`` in that thread is logged and kept in ``service.error``.

A service subclasses :class:`Service` and fills in four hooks: ``_open`` (bind/connect;
whatever it opened before failing is released by ``_release``), ``_serve`` (the loop,
until :attr:`Service.stopping`), ``_release`` (called once, whether or not ``_serve``
ran) and optionally ``_wake`` (make a blocked ``_serve`` notice ``stop()`` now; must be
signal-safe). The base class owns the state, its lock and the threads, so every service
behaves the same.
"""

from __future__ import annotations

import logging
import threading
from types import TracebackType
from typing import Literal, Protocol, Self

from framebroker.errors import FrameBrokerError

log = logging.getLogger("framebroker.service")

Phase = Literal["new", "started", "running", "closed"]
CLOSE_TIMEOUT_S = 10.0  # close() waits this long for run() to finish (flushing included)


class Lifecycle(Protocol):
    """What :func:`framebroker.cli_service.run_service` needs of a service."""

    def start(self) -> None: ...
    def run(self) -> None: ...
    def stop(self) -> None: ...
    def close(self) -> None: ...


class Service:
    """Base class of the long-running services; see the module docstring for the contract."""

    thread_name = "framebroker-service"

    def __init__(self) -> None:
        self._phase: Phase = "new"
        self._phase_lock = threading.Lock()
        self._stopping = threading.Event()
        self._finished = threading.Event()  # run() has released everything, or never will
        self._run_thread: threading.Thread | None = None  # the thread inside run()
        self._released = False
        self.thread: threading.Thread | None = None  # run_in_thread()'s thread
        self.error: BaseException | None = None  # what ended run() in run_in_thread()

    # --- the hooks a service fills in ------------------------------------------------

    def _open(self) -> None:
        """Bind or connect (called once, by start())."""

    def _serve(self) -> None:
        """The loop: return once :attr:`stopping` is true (or the work is done)."""

    def _release(self) -> None:
        """Close sockets, stores, threads; called once, also after a failed ``_open``."""

    def _wake(self) -> None:
        """Make a blocked ``_serve`` see ``stopping`` now (signal-safe; optional)."""

    # --- the contract ----------------------------------------------------------------

    @property
    def stopping(self) -> bool:
        """True once stop() or close() was called: ``_serve`` should return."""
        return self._stopping.is_set()

    @property
    def phase(self) -> Phase:
        """``new``, ``started``, ``running`` or ``closed``."""
        return self._phase

    def start(self) -> None:
        """Bind/connect; raises what ``_open`` raises (then the service is closed)."""
        with self._phase_lock:
            if self._phase != "new":
                return
            try:
                self._open()
            except BaseException:
                self._phase = "closed"
                self._release_once()
                self._finished.set()
                raise
            self._phase = "started"

    def run(self) -> None:
        """Serve until stop()/close() (or the service's own end); start() first if needed."""
        self.start()
        with self._phase_lock:
            if self._phase == "running":
                raise FrameBrokerError(f"{type(self).__name__} is already running")
            if self._phase != "started":
                return  # closed before it ran
            self._phase = "running"
            self._run_thread = threading.current_thread()
        try:
            self._serve()
        finally:
            with self._phase_lock:
                self._phase = "closed"
                self._release_once()
            self._finished.set()

    def stop(self) -> None:
        """Ask run() to return; never blocks: safe from a signal handler and any thread."""
        self._stopping.set()
        self._wake()

    def close(self, timeout: float = CLOSE_TIMEOUT_S) -> None:
        """Stop, wait (up to ``timeout`` s) for run() to finish, release everything."""
        self.stop()
        with self._phase_lock:
            if self._phase in ("new", "started"):
                self._phase = "closed"
                self._release_once()
                self._finished.set()
            inside = self._run_thread is threading.current_thread()
        if not inside and not self._finished.wait(timeout):
            log.error("%s: run() did not finish within %g s of close()", self, timeout)
        thread = self.thread
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout)

    def run_in_thread(self) -> Self:
        """start() here, then run() in a daemon thread (``self.thread``); close() joins it."""
        self.start()
        with self._phase_lock:
            if self.thread is not None or self._phase != "started":
                return self
            self.thread = threading.Thread(
                target=self._run_in_background, name=self.thread_name, daemon=True
            )
        self.thread.start()
        return self

    def _run_in_background(self) -> None:
        try:
            self.run()
        except BaseException as exc:
            self.error = exc
            log.error("%s stopped on an error: %s", self, exc, exc_info=exc)

    def _release_once(self) -> None:
        """Call ``_release`` once (caller holds the phase lock)."""
        if not self._released:
            self._released = True
            self._release()

    def __enter__(self) -> Self:
        self.start()
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<{type(self).__name__} {self._phase}>"
