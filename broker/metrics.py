"""Prometheus metrics of the broker, read from its stats and stream registry at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge, one

from .service import Broker
from .stats import BrokerStats

_TOTALS = (
    ("frames_out", "frames forwarded to subscribers"),
    ("cache_sends", "newest frames re-sent to new subscriptions (last value cache)"),
    ("disconnects", "ingest peers that disconnected, including oversize senders"),
    ("subscriptions", "subscribe messages seen on the publish port"),
    ("unsubscriptions", "unsubscribe messages seen on the publish port"),
    ("control_requests", "control requests answered"),
    ("control_errors", "control requests answered with an error"),
    ("streams_forgotten", "streams forgotten after --forget-after"),
)


_WORK_TOTALS = (
    ("work_requests", "work requests received on the work port"),
    ("work_errors", "work requests refused (malformed, or over --max-groups / --max-workers)"),
    ("work_unreachable", "frames that found their worker gone (sent to another or kept waiting)"),
    ("workers_joined", "workers that joined a group"),
    ("workers_left", "workers that left a group (leave, timeout or gone)"),
)


class BrokerCollector:
    def __init__(self, broker: Broker) -> None:
        self.broker = broker

    def collect(self) -> Iterator[Metric]:
        stats = self.broker.stats()
        streams = self.broker.streams()
        by_stream = [((s.stream,), s) for s in streams]
        label = ("stream",)
        yield counter(
            "broker_frames_in",
            "valid frames received per stream",
            {k: s.frames for k, s in by_stream},
            label,
        )
        yield counter(
            "broker_bytes_in",
            "bytes of valid frames per stream",
            {k: s.bytes for k, s in by_stream},
            label,
        )
        yield gauge(
            "broker_stream_fps",
            "recent frame rate per stream (-1 until measured)",
            {k: s.fps for k, s in by_stream},
            label,
        )
        yield gauge(
            "broker_stream_age_seconds",
            "seconds since the stream's newest frame",
            {k: s.age_s for k, s in by_stream},
            label,
        )
        yield gauge(
            "broker_stream_live",
            "1 if the stream is live, 0 if stale",
            {k: 1.0 if s.state == "live" else 0.0 for k, s in by_stream},
            label,
        )
        yield counter(
            "broker_stream_sessions",
            "producer sessions seen per stream (more than 1: the producer restarted)",
            {k: s.sessions for k, s in by_stream},
            label,
        )
        yield counter("broker_frames_in_all", "valid frames received", one(stats.frames_in))
        yield counter("broker_bytes_in_all", "bytes of valid frames received", one(stats.bytes_in))
        for name, doc in _TOTALS:
            yield counter("broker_" + name, doc, one(getattr(stats, name)))
        dropped: dict[tuple[str, ...], float] = {
            ("malformed_" + kind,): n for kind, n in stats.malformed_by_kind.items()
        }
        dropped.update({(reason,): n for reason, n in stats.rejected_by_reason.items()})
        dropped[("auth",)] = stats.auth_rejected
        yield counter(
            "broker_dropped",
            "input dropped or refused, by reason: malformed_<kind> (ingest, kinds of "
            "docs/protocol.md), the limits and bad messages of docs/metrics.md, and auth "
            "(client connections refused by CURVE: nothing of theirs was received)",
            dropped,
            ("reason",),
        )
        yield counter(
            "broker_auth_rejected",
            "client handshakes rejected by CURVE, by port (reasons: the stats control op)",
            {(name,): n for name, n in stats.auth_rejected_by_socket.items()},
            ("socket",),
        )
        yield gauge(
            "broker_cached_bytes",
            "bytes of newest frames cached (<= --cache-budget)",
            one(stats.cached_bytes),
        )
        yield gauge(
            "broker_subscription_prefixes",
            "distinct subscriptions tracked (<= --max-subscriptions)",
            one(stats.subscription_prefixes),
        )
        yield gauge(
            "broker_subscribers",
            "subscriptions minus unsubscriptions seen (XPUB_VERBOSE: repeats count)",
            one(max(0, stats.subscriptions - stats.unsubscriptions)),
        )
        yield gauge(
            "broker_streams",
            "known streams by state",
            {("live",): stats.streams_live, ("stale",): stats.streams_stale},
            ("state",),
        )
        yield gauge("broker_uptime_seconds", "seconds since the broker bound", one(stats.uptime_s))
        yield from self._groups(stats)

    def _groups(self, stats: BrokerStats) -> Iterator[Metric]:
        """Work groups (protocol v1.2): per group, and the work port's totals."""
        by_group = [((g.group,), g) for g in self.broker.groups()]
        yield gauge(
            "broker_group_workers",
            "workers in each work group",
            {k: len(g.workers) for k, g in by_group},
            ("group",),
        )
        yield counter(
            "broker_group_dispatched",
            "frames handed to a worker of the group",
            {k: g.dispatched for k, g in by_group},
            ("group",),
        )
        yield counter(
            "broker_group_skipped",
            "frames replaced by a newer one of their stream before any worker of the group asked",
            {k: g.skipped for k, g in by_group},
            ("group",),
        )
        for name, doc in _WORK_TOTALS:
            yield counter("broker_" + name, doc, one(getattr(stats, name)))
