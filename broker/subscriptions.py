"""What arrives on the broker's publish (XPUB) socket: subscriptions, checked and bounded.

Pure bookkeeping (no sockets). With ``XPUB_VERBOSE`` libzmq passes up every subscribe
message (repeats too) and an unsubscribe message when the last subscriber of a prefix
leaves, so the set kept here mirrors the distinct prefixes libzmq routes on. It holds at
most ``max_subscriptions`` of them: a subscription to one more prefix is refused the last
value cache, counted (``subscription_limit``) and logged. A message that is neither a
subscribe (``0x01`` + prefix) nor an unsubscribe (``0x00`` + prefix), which only a raw
XSUB peer can send, is counted (``subscription_invalid``) and dropped.

A subscribe message longer than ``max_size`` is refused the same way
(``subscription_oversize``). libzmq itself still routes a refused prefix to its subscriber
and keeps it in its own subscription trie until that subscriber leaves; the publish
socket's ``ZMQ_MAXMSGSIZE`` (``max_subscription_size``, but at least the 512 bytes a
CURVE handshake needs) bounds each prefix's length there.
"""

from __future__ import annotations

import logging

from framebroker.ratelimit import RateLimitedLog

from .stats import Counters

_SUBSCRIBE, _UNSUBSCRIBE = 1, 0


class Subscriptions:
    """The distinct subscribed prefixes, at most ``limit`` of them."""

    def __init__(
        self, limit: int, counters: Counters, rlog: RateLimitedLog, max_size: int = 1 << 30
    ) -> None:
        self._limit = limit
        self._max_size = max_size
        self._counters = counters
        self._rlog = rlog
        self._prefixes: set[bytes] = set()

    def __len__(self) -> int:
        return len(self._prefixes)

    def accept(self, msg: bytes) -> bytes | None:
        """Account one message; return the prefix to serve from the cache, if any."""
        if not msg or msg[0] not in (_SUBSCRIBE, _UNSUBSCRIBE):
            self._refuse(
                "subscription_invalid",
                "dropped a %d-byte message on the publish port that is no subscription: %r",
                len(msg),
                msg[:24],
            )
            return None
        prefix = msg[1:]
        if msg[0] == _UNSUBSCRIBE:
            self._counters.unsubscriptions += 1
            self._prefixes.discard(prefix)
            return None
        self._counters.subscriptions += 1
        if len(msg) > self._max_size:
            self._refuse(
                "subscription_oversize",
                "subscription of %d bytes refused (--max-subscription-size %d): %r...",
                len(msg),
                self._max_size,
                prefix[:40],
            )
            return None
        if prefix not in self._prefixes:
            if len(self._prefixes) >= self._limit:
                self._refuse(
                    "subscription_limit",
                    "subscription %r refused: %d distinct subscriptions already "
                    "(--max-subscriptions); it gets no cached frames",
                    prefix[:40],
                    self._limit,
                )
                return None
            self._prefixes.add(prefix)
        return prefix

    def _refuse(self, reason: str, msg: str, *args: object) -> None:
        self._counters.count_rejected(reason)
        self._rlog.log(logging.WARNING, reason, msg, *args)

    def any_starting_with(self, start: bytes) -> bool:
        """Whether some subscribed prefix starts with ``start`` (e.g. ``$shm``)."""
        return any(prefix.startswith(start) for prefix in self._prefixes)
