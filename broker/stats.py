"""Broker totals: counters bumped on the hot path, snapshots for the control port and log."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import asdict, dataclass, field
from typing import Any

log = logging.getLogger("framebroker.broker")


class Counters:
    """Plain integer counters, owned and bumped by the broker's loop thread."""

    __slots__ = (
        "bytes_in",
        "cache_sends",
        "control_errors",
        "control_requests",
        "disconnects",
        "frames_in",
        "frames_out",
        "malformed",
        "malformed_by_kind",
        "rejected_by_reason",
        "subscriptions",
        "unsubscriptions",
    )

    def __init__(self) -> None:
        self.frames_in = 0  # valid frame messages received on ingest
        self.bytes_in = 0  # their total size
        self.frames_out = 0  # frames sent on publish (one per forwarded frame)
        self.cache_sends = 0  # cached frames sent to new subscriptions (last value cache)
        self.malformed = 0  # ingest messages dropped as malformed
        self.malformed_by_kind: dict[str, int] = {}
        self.disconnects = 0  # ingest peers disconnected (incl. oversize: MAXMSGSIZE)
        self.subscriptions = 0  # subscribe messages seen on publish (XPUB_VERBOSE)
        self.unsubscriptions = 0
        self.control_requests = 0
        self.control_errors = 0  # requests answered with ok=false
        # input refused or not served, by reason (limits, bad subscriptions and control
        # messages; see docs/protocol.md "Limits"); malformed frames are counted above
        self.rejected_by_reason: dict[str, int] = {}

    def count_malformed(self, kind: str) -> None:
        self.malformed += 1
        self.malformed_by_kind[kind] = self.malformed_by_kind.get(kind, 0) + 1

    def count_rejected(self, reason: str, n: int = 1) -> None:
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + n


@dataclass(frozen=True)
class BrokerStats:
    """A snapshot of the broker's totals (the ``stats`` control op).

    ``disconnects`` counts ingest peers that went away: producers stopping, network
    failures and producers that sent a message larger than ``max_message_size`` (libzmq
    disconnects those and does not say why, so oversize messages are not counted apart).
    ``auth_rejected`` counts client handshakes refused by CURVE on any of the three ports
    (by socket and by reason: ``mechanism`` no CURVE, ``unknown_key`` not in the
    allow-list, ``crypto`` a wrong server key); those are not counted as disconnects.
    ``rejected_by_reason`` counts what the limits refused (``broker/limits.py``) and bad
    subscriptions and control messages; ``cached_bytes`` is the size of the newest frames
    kept (at most the cache budget) and ``subscription_prefixes`` the distinct
    subscriptions tracked (at most ``max_subscriptions``).
    """

    uptime_s: float
    frames_in: int
    bytes_in: int
    frames_out: int
    cache_sends: int
    malformed: int
    disconnects: int
    subscriptions: int
    unsubscriptions: int
    control_requests: int
    control_errors: int
    streams_live: int
    streams_stale: int
    streams_forgotten: int
    malformed_by_kind: dict[str, int] = field(default_factory=dict)
    # work groups (protocol v1.2): see broker.work_port.WorkPort.counters
    groups: int = 0
    workers: int = 0
    work_requests: int = 0
    work_errors: int = 0
    work_sent: int = 0
    work_unreachable: int = 0
    workers_joined: int = 0
    workers_left: int = 0
    # feeds (protocol v1.6: credit-based fan-out), see WorkPort.counters
    feeds: int = 0
    feed_sent: int = 0
    feed_skipped: int = 0
    # plain subscribers' queues (broker.publish_bound)
    publish_overflows: int = 0
    publish_hwm: int = 0
    auth_rejected: int = 0  # client handshakes rejected by CURVE (no, unknown or wrong key)
    auth_rejected_by_socket: dict[str, int] = field(default_factory=dict)
    auth_rejected_by_reason: dict[str, int] = field(default_factory=dict)
    rejected_by_reason: dict[str, int] = field(default_factory=dict)
    cached_bytes: int = 0
    subscription_prefixes: int = 0

    @classmethod
    def from_counters(
        cls,
        c: Counters,
        *,
        uptime_s: float,
        live: int,
        stale: int,
        forgotten: int,
        work: Mapping[str, int] | None = None,
        auth_by_socket: Mapping[str, int] | None = None,
        auth_by_reason: Mapping[str, int] | None = None,
        cached_bytes: int = 0,
        subscription_prefixes: int = 0,
        publish_overflows: int = 0,
        publish_hwm: int = 0,
    ) -> BrokerStats:
        by_socket = dict(auth_by_socket or {})
        return cls(
            uptime_s=round(uptime_s, 3),
            frames_in=c.frames_in,
            bytes_in=c.bytes_in,
            frames_out=c.frames_out,
            cache_sends=c.cache_sends,
            malformed=c.malformed,
            disconnects=c.disconnects,
            subscriptions=c.subscriptions,
            unsubscriptions=c.unsubscriptions,
            control_requests=c.control_requests,
            control_errors=c.control_errors,
            streams_live=live,
            streams_stale=stale,
            streams_forgotten=forgotten,
            malformed_by_kind=dict(c.malformed_by_kind),
            **(work or {}),
            auth_rejected=sum(by_socket.values()),
            auth_rejected_by_socket=by_socket,
            auth_rejected_by_reason=dict(auth_by_reason or {}),
            rejected_by_reason=dict(c.rejected_by_reason),
            cached_bytes=cached_bytes,
            subscription_prefixes=subscription_prefixes,
            publish_overflows=publish_overflows,
            publish_hwm=publish_hwm,
        )

    def to_map(self) -> dict[str, Any]:
        return asdict(self)


class StatsLog:
    """One INFO line every ``interval`` seconds with totals and rates since the last line."""

    def __init__(self, interval: float) -> None:
        self.interval = interval
        self._last: BrokerStats | None = None

    def emit(self, stats: BrokerStats) -> None:
        prev = self._last
        self._last = stats
        span = stats.uptime_s - prev.uptime_s if prev else stats.uptime_s
        span = span if span > 0 else 1.0

        def rate(name: str) -> float:
            before = getattr(prev, name) if prev else 0
            return float(getattr(stats, name) - before) / span

        log.info(
            "streams %d live, %d stale | in %.1f fps %.2f MB/s | out %.1f fps | "
            "lvc %d | subs %d | malformed %d | rejected %d | disconnects %d",
            stats.streams_live,
            stats.streams_stale,
            rate("frames_in"),
            rate("bytes_in") / 1e6,
            rate("frames_out"),
            stats.cache_sends,
            stats.subscriptions,
            stats.malformed,
            sum(stats.rejected_by_reason.values()),
            stats.disconnects,
        )
