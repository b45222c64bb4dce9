"""Prometheus metrics of a consumer: its counters at scrape time, and histograms of frame
age at processing start and of processing time, observed from each result.

The histograms hook the consumer's public ``on_result`` callback (chaining whatever was
there), so the processing loop itself is unchanged. They cover frames whose processor
returned a result (every built-in processor does).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client import Histogram
from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge
from framebroker.protocol import ResultMessage

AGE_BUCKETS = (0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0)
TIME_BUCKETS = (0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5)


class ConsumerCollector:
    def __init__(self, consumer: Any) -> None:
        self.consumer = consumer
        labels = ["consumer", "stream"]
        self.age = Histogram(
            "framebroker_consumer_frame_age_seconds",
            "frame age when processing started (t_start - t_capture)",
            labels,
            registry=None,
            buckets=AGE_BUCKETS,
        )
        self.duration = Histogram(
            "framebroker_consumer_processing_seconds",
            "processor time per frame",
            labels,
            registry=None,
            buckets=TIME_BUCKETS,
        )
        self._chained = consumer.on_result
        consumer.on_result = self.observe

    def observe(self, message: ResultMessage) -> None:
        labels = (message.consumer, message.stream)
        self.age.labels(*labels).observe(max(0, message.t_start - message.t_capture) / 1e9)
        self.duration.labels(*labels).observe(message.duration_ns / 1e9)
        if self._chained is not None:
            self._chained(message)

    def collect(self) -> Iterator[Metric]:
        snapshot = self.consumer.stats.snapshot()
        key = (self.consumer.name,)
        for name, value in snapshot.items():
            if isinstance(value, bool) or not isinstance(value, int):
                continue
            doc = name.replace("_", " ")
            yield counter("consumer_" + name, doc, {key: value}, ("consumer",))
        age = snapshot.get("age_ms_median")
        if age is not None:
            yield gauge(
                "consumer_frame_age_median_seconds",
                "median frame age at processing start over the recent frames",
                {(self.consumer.name,): age / 1e3},
                ("consumer",),
            )
        yield from self.age.collect()
        yield from self.duration.collect()
