"""Prometheus metrics of a producer, read from ``Producer.stats()`` at scrape time."""

from __future__ import annotations

from collections.abc import Iterator

from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge

from .producer import Producer

_COUNTERS = (
    ("grabbed", "frames the source delivered"),
    ("published", "frames sent to the broker"),
    ("skipped", "frames grabbed but superseded by a newer one before publishing"),
    ("encode_errors", "frames that could not be encoded"),
    ("source_failures", "failed opens, lost streams and watchdog trips (each one reconnects)"),
)
STATES = ("opening", "streaming", "retrying", "ended", "failed", "closed", "idle")


class ProducerCollector:
    def __init__(self, producer: Producer) -> None:
        self.producer = producer

    def collect(self) -> Iterator[Metric]:
        stats = self.producer.stats()
        key = (self.producer.config.stream,)
        for name, doc in _COUNTERS:
            yield counter("producer_" + name, doc, {key: getattr(stats, name)}, ("stream",))
        yield gauge(
            "producer_state",
            "1 for the source's current state",
            {(key[0], state): 1.0 if stats.state == state else 0.0 for state in STATES},
            ("stream", "state"),
        )
