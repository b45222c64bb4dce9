"""Capped exponential backoff between attempts to reopen a failed source."""

from __future__ import annotations

from framebroker.errors import ConfigError


class Backoff:
    """Delays ``initial``, ``initial * factor``, ... capped at ``maximum``.

    >>> b = Backoff(initial=0.5, maximum=2.0)
    >>> [b.next_delay() for _ in range(5)]
    [0.5, 1.0, 2.0, 2.0, 2.0]
    >>> b.reset(); b.next_delay()
    0.5
    """

    def __init__(self, initial: float = 0.5, maximum: float = 30.0, factor: float = 2.0) -> None:
        if not (0 < initial <= maximum):
            raise ConfigError(
                f"backoff needs 0 < initial <= maximum, got initial={initial} maximum={maximum}"
            )
        if factor < 1:
            raise ConfigError(f"backoff factor must be >= 1, got {factor}")
        self.initial = initial
        self.maximum = maximum
        self.factor = factor
        self.attempts = 0  # failures since the last reset
        self._delay = initial

    def next_delay(self) -> float:
        """The delay before the next attempt; each call grows the following one."""
        delay = self._delay
        self._delay = min(self._delay * self.factor, self.maximum)
        self.attempts += 1
        return delay

    def reset(self) -> None:
        """After a success: start again from ``initial``."""
        self._delay = self.initial
        self.attempts = 0
