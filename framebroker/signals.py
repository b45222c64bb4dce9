"""Graceful stop on SIGINT/SIGTERM for every long-running command.

    with StopOnSignals(service.stop) as signals:
        service.run()
    return signals.exit_code

Inside the block, SIGINT (Ctrl-C) and SIGTERM (``docker stop``, ``kill``) call ``stop``,
which must be non-blocking and safe in a signal handler; ``run`` then returns after
finishing what it holds (flushing, releasing sockets). A second Ctrl-C raises
KeyboardInterrupt for a user who will not wait (unless ``escalate=False``: a supervisor
that must always reach its own clean-up, like the demo stopping its children).
``exit_code`` is 130 after Ctrl-C and 0 otherwise. Outside the main thread (tests
running a command in a thread) it does nothing.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from types import FrameType, TracebackType
from typing import Any

from framebroker.cli import EXIT_INTERRUPTED, EXIT_OK

_SIGNALS = (signal.SIGINT, signal.SIGTERM)


class StopOnSignals:
    def __init__(self, stop: Callable[[], Any], *, escalate: bool = True) -> None:
        self._stop = stop
        self._escalate = escalate
        self._previous: dict[int, Any] = {}
        self.received: list[int] = []

    @property
    def exit_code(self) -> int:
        return EXIT_INTERRUPTED if signal.SIGINT in self.received else EXIT_OK

    def _handle(self, signum: int, frame: FrameType | None) -> None:
        if self._escalate and signum == signal.SIGINT and signum in self.received:
            raise KeyboardInterrupt
        self.received.append(signum)
        self._stop()

    def __enter__(self) -> StopOnSignals:
        if threading.current_thread() is threading.main_thread():
            self._previous = {sig: signal.signal(sig, self._handle) for sig in _SIGNALS}
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        for sig, old in self._previous.items():
            signal.signal(sig, old)
        self._previous = {}
