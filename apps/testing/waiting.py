"""wait_until: poll a condition until it holds, or fail naming what was awaited.

Tests of services that run in threads or processes cannot know when a frame has gone
through; they poll. One helper does it for the whole suite (and for users' tests), so a
timeout always fails the same loud way: an AssertionError saying what never happened and
the last value seen, not a bare "timed out" or a test that passes by returning False.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

_FIRST_DELAY = 0.005  # the first re-check comes quickly: most conditions hold at once
_MAX_DELAY = 0.1  # then back off, so a long wait polls ten times a second at most


def wait_until(
    predicate: Callable[[], T],
    timeout: float = 15.0,
    what: str | None = None,
    *,
    interval: float | None = None,
) -> T:
    """Call ``predicate`` until it returns something truthy, and return that.

    Raises AssertionError after ``timeout`` seconds, naming ``what`` was awaited (the
    predicate's docstring when ``what`` is None) and the last value it returned. Polls
    every ``interval`` seconds, or by default after 5 ms and then less and less often (up
    to every 100 ms). An exception from ``predicate`` propagates at once.
    """
    deadline = time.monotonic() + timeout
    delay = interval if interval is not None else _FIRST_DELAY
    while True:
        value = predicate()
        if value:
            return value
        remaining = deadline - time.monotonic()
        if remaining <= 0:
            break
        time.sleep(min(delay, remaining))
        if interval is None:
            delay = min(delay * 2, _MAX_DELAY)
    name = what or (predicate.__doc__ or "").strip() or repr(predicate)
    last = repr(value)
    last = last if len(last) <= 200 else last[:197] + "..."
    raise AssertionError(f"timed out after {timeout:g} s waiting for {name} (last: {last})")
