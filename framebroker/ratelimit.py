"""Rate-limited logging: bad input is logged, but never floods the log."""

from __future__ import annotations

import logging
import time


class RateLimitedLog:
    """Log at most one line per ``key`` every ``interval`` seconds, counting the rest.

    >>> log = RateLimitedLog(logging.getLogger("x"), interval=5.0)
    >>> log.warning("malformed", "dropped malformed message: %s", "bad magic")
    """

    def __init__(self, logger: logging.Logger, interval: float = 5.0) -> None:
        self._logger = logger
        self._interval = interval
        self._last: dict[str, float] = {}
        self._suppressed: dict[str, int] = {}

    def warning(self, key: str, msg: str, *args: object) -> None:
        self.log(logging.WARNING, key, msg, *args)

    def log(self, level: int, key: str, msg: str, *args: object) -> None:
        now = time.monotonic()
        last = self._last.get(key)
        if last is not None and now - last < self._interval:
            self._suppressed[key] = self._suppressed.get(key, 0) + 1
            return
        self._last[key] = now
        skipped = self._suppressed.pop(key, 0)
        if skipped:
            msg += f" (and {skipped} more like it in the last {self._interval:g}s)"
        self._logger.log(level, msg, *args)
