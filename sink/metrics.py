"""Prometheus metrics of the sink, read from ``Sink.stats()`` at scrape time.

Every integer field of the stats snapshot becomes ``framebroker_sink_<field>_total``,
except ``pending`` (results decoded, not yet stored: the sink's lag), a gauge;
``malformed_by_reason`` becomes ``framebroker_sink_malformed_by_reason_total{reason=...}``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge, one

GAUGES = {"pending": "results received but not stored yet (the sink's lag)"}
DOCS = {
    "received": "result messages taken off the results socket",
    "stored": "results written to the store",
    "malformed": "result messages dropped because they did not decode",
    "store_errors": "failed batch writes (retried)",
    "dropped": "results lost because the store kept failing",
    "auth_rejected": "client handshakes rejected by CURVE (nothing of theirs was received)",
}


class SinkCollector:
    def __init__(self, sink: Any) -> None:
        self.sink = sink

    def collect(self) -> Iterator[Metric]:
        stats = self.sink.stats()
        for field in dataclasses.fields(stats):
            value = getattr(stats, field.name)
            if isinstance(value, dict):
                yield counter(
                    "sink_malformed_by_reason",
                    "result messages dropped as malformed, by reason",
                    {(reason,): n for reason, n in value.items()},
                    ("reason",),
                )
                continue
            if isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if field.name in GAUGES:
                yield gauge("sink_" + field.name, GAUGES[field.name], one(value))
            else:
                doc = DOCS.get(field.name, field.name.replace("_", " "))
                yield counter("sink_" + field.name, doc, one(value))
