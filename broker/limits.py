"""The broker's resource limits, and the rate limiters of its last value cache.

Pure (no sockets). :class:`BrokerLimits` is the frozen value in ``BrokerConfig.limits``;
what each limit bounds and what happens when it is reached:

==========================  ==========  ===================================================
limit                       default     when reached
==========================  ==========  ===================================================
``max_streams``             10,000      a frame of a new stream id is dropped (counted as
                                        ``stream_limit``, logged); known streams go on.
                                        Stale streams are forgotten early to make room.
``max_subscriptions``       10,000      a subscription to a new prefix gets no cached
                                        frames and is not tracked (``subscription_limit``)
``cache_budget``            1 GiB       newest frames cached over all streams; a frame
                                        that does not fit is forwarded but not cached
                                        (``cache_budget``)
``cache_send_rate``         4 /s        cached frames re-sent per stream per second; more
                                        subscriptions in that second get the next live
                                        frame instead (``cache_rate``)
``max_subscription_size``   256 B       a longer subscription gets no cached frames and is
                                        not tracked (``subscription_oversize``); one longer
                                        than the publish socket's ZMQ_MAXMSGSIZE (this, but
                                        at least ``transport.HANDSHAKE_ROOM``, 512 B)
                                        disconnects its sender
``max_control_size``        64 KiB      ZMQ_MAXMSGSIZE of the control socket
==========================  ==========  ===================================================

Besides, the broker looks up the cache for at most :data:`CACHE_SCANS_PER_S` subscriptions
a second (``cache_scan_rate``): a flood of subscribe messages costs a dictionary lookup
each, never a walk over every stream, and never multiplies the traffic to subscribers.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field

from framebroker.config import format_bytes, parse_bytes, parse_positive
from framebroker.control_protocol import MAX_CONTROL_PARTS as MAX_CONTROL_PARTS
from framebroker.control_protocol import MAX_CONTROL_SIZE
from framebroker.errors import ConfigError
from framebroker.options import option
from framebroker.protocol import MAX_STREAM_ID_BYTES

from .registry import StreamEntry
from .stats import Counters

DEFAULT_MAX_STREAMS = 10_000
DEFAULT_MAX_SUBSCRIPTIONS = 10_000
DEFAULT_CACHE_BUDGET = 1 << 30  # 1 GiB of cached newest frames over all streams
DEFAULT_CACHE_SEND_RATE = 4.0  # cached frames re-sent per stream per second
# A subscription message is 1 byte (subscribe/unsubscribe) + a prefix of a topic and its
# terminator (<= 201 bytes): 256 leaves room and keeps libzmq's subscription trie small
# (it costs ~70 bytes per prefix byte; measured with libzmq 4.3.5).
DEFAULT_MAX_SUBSCRIPTION_SIZE = 256
DEFAULT_MAX_CONTROL_SIZE = MAX_CONTROL_SIZE  # control requests are tiny msgpack maps
MIN_SUBSCRIPTION_SIZE = MAX_STREAM_ID_BYTES + 2  # every valid subscription must fit

CACHE_SCANS_PER_S = 100.0  # subscriptions looked up in the cache per second, at most
_NS = 1_000_000_000


@dataclass(frozen=True)
class BrokerLimits:
    """How much the broker keeps, whatever its peers send (see the module docstring)."""

    max_streams: int = field(
        default=DEFAULT_MAX_STREAMS,
        metadata=option(
            "--max-streams",
            type=int,
            metavar="N",
            help="streams known at once; frames of one more new stream are dropped (stale "
            "streams are forgotten early to make room)",
        ),
    )
    max_subscriptions: int = field(
        default=DEFAULT_MAX_SUBSCRIPTIONS,
        metadata=option(
            "--max-subscriptions",
            type=int,
            metavar="N",
            help="distinct subscriptions tracked; one more gets no cached frames",
        ),
    )
    cache_budget: int = field(
        default=DEFAULT_CACHE_BUDGET,
        metadata=option(
            "--cache-budget",
            type=parse_bytes,
            show=format_bytes,
            metavar="BYTES",
            help="newest frames cached for new subscribers, all streams together (0: none)",
        ),
    )
    cache_send_rate: float = field(
        default=DEFAULT_CACHE_SEND_RATE,
        metadata=option(
            "--cache-send-rate",
            type=parse_positive,
            metavar="PER_SECOND",
            help="times per second a stream's cached frame is sent to new subscriptions, at most",
        ),
    )
    max_subscription_size: int = field(
        default=DEFAULT_MAX_SUBSCRIPTION_SIZE,
        metadata=option(
            "--max-subscription-size",
            type=parse_bytes,
            show=format_bytes,
            metavar="BYTES",
            help="largest subscription message; libzmq disconnects a subscriber sending more",
        ),
    )
    max_control_size: int = field(
        default=DEFAULT_MAX_CONTROL_SIZE,
        metadata=option(
            "--max-control-size",
            type=parse_bytes,
            show=format_bytes,
            metavar="BYTES",
            help="largest control request; libzmq disconnects a client sending more",
        ),
    )

    def __post_init__(self) -> None:
        if self.max_streams < 1:
            raise ConfigError(f"max_streams must be >= 1: {self.max_streams}")
        if self.max_subscriptions < 1:
            raise ConfigError(f"max_subscriptions must be >= 1: {self.max_subscriptions}")
        if self.cache_budget < 0:
            raise ConfigError(f"cache_budget must be >= 0 bytes (0 = off): {self.cache_budget}")
        if not self.cache_send_rate > 0:
            raise ConfigError(f"cache_send_rate must be > 0 per second: {self.cache_send_rate}")
        if self.max_subscription_size < MIN_SUBSCRIPTION_SIZE:
            raise ConfigError(
                f"max_subscription_size must be >= {MIN_SUBSCRIPTION_SIZE} bytes (the longest "
                f"valid subscription): {self.max_subscription_size}"
            )
        if self.max_control_size < 1024:
            raise ConfigError(f"max_control_size must be >= 1 KiB: {self.max_control_size}")


class TokenBucket:
    """``rate`` tokens a second, at most ``burst`` saved up; times in monotonic ns."""

    __slots__ = ("_burst", "_per_ns", "at", "tokens")

    def __init__(self, rate: float, burst: float, now: int) -> None:
        self._per_ns = rate / _NS
        self._burst = burst
        self.tokens = burst
        self.at = now

    def take(self, now: int) -> bool:
        """Take one token if there is one."""
        self.tokens = min(self._burst, self.tokens + (now - self.at) * self._per_ns)
        self.at = now
        if self.tokens >= 1.0:
            self.tokens -= 1.0
            return True
        return False

    def full(self, now: int) -> bool:
        return self.tokens + (now - self.at) * self._per_ns >= self._burst


class CacheSendLimiter:
    """Rate limits of the last value cache: lookups overall, re-sends per stream.

    XPUB sends a cached frame to *every* matching subscriber, so without a limit each
    subscribe message would make the broker send every matching stream's newest frame to
    everybody again: a flood of subscriptions would multiply the outgoing traffic.
    """

    def __init__(self, send_rate: float, scan_rate: float = CACHE_SCANS_PER_S) -> None:
        self._send_rate = send_rate
        self._send_burst = max(1.0, send_rate)
        self._scans = TokenBucket(scan_rate, scan_rate, 0)
        self._streams: dict[str, TokenBucket] = {}

    def select(
        self, entries: Iterable[StreamEntry], now: int, counters: Counters
    ) -> Iterator[StreamEntry]:
        """The ``entries`` whose cached frame may be sent for one subscription now.

        ``entries`` is walked only if the lookup rate allows (else nothing, counted as
        ``cache_scan_rate``); an entry beyond its stream's rate is counted ``cache_rate``.
        """
        if not self._scans.take(now):
            counters.count_rejected("cache_scan_rate")
            return
        for entry in entries:
            if self.may_send(entry.stream, now):
                yield entry
            else:
                counters.count_rejected("cache_rate")

    def may_send(self, stream: str, now: int) -> bool:
        """Whether ``stream``'s cached frame may be sent again now."""
        bucket = self._streams.get(stream)
        if bucket is None:
            bucket = self._streams[stream] = TokenBucket(self._send_rate, self._send_burst, now)
        return bucket.take(now)

    def prune(self, now: int) -> None:
        """Forget streams whose allowance is whole again (keeps this map small)."""
        for stream in [s for s, b in self._streams.items() if b.full(now)]:
            del self._streams[stream]

    def __len__(self) -> int:
        return len(self._streams)
