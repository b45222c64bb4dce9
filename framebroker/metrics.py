"""Prometheus metrics for every service: ``--metrics-port`` (``FRAMEBROKER_METRICS_PORT``).

Services keep counting as they always did (plain integers in their stats objects); a role
hands :func:`expose` a *collector* that reads those counters when Prometheus scrapes, so
nothing on a hot path changes. :func:`serve` starts the HTTP exposition server on the
port (0 or absent: off); ``framebroker.cli.main`` does that for commands that declare
``metrics=True``. The metric names are documented in docs/metrics.md.

A collector is any object with ``collect() -> Iterable[Metric]``; :func:`counter` and
:func:`gauge` make labelled metric families from plain values.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterable, Mapping
from typing import Any, Protocol

from prometheus_client import CollectorRegistry, start_http_server
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric

from framebroker.errors import TransportError

log = logging.getLogger("framebroker.metrics")

PREFIX = "framebroker_"


class Collector(Protocol):
    def collect(self) -> Iterable[Metric]: ...


_registry = CollectorRegistry(auto_describe=False)
_lock = threading.Lock()
_server: Any = None


def registry() -> CollectorRegistry:
    return _registry


def expose(collector: Collector) -> Collector:
    """Add ``collector`` to what the metrics port shows (harmless when metrics are off)."""
    with _lock:
        _registry.register(collector)
    return collector


def serve(port: int, host: str = "0.0.0.0") -> int:
    """Start the exposition server on ``port`` (0: off); returns the port served."""
    global _server
    if not port:
        return 0
    try:
        server, _thread = start_http_server(port, addr=host, registry=_registry)
    except OSError as exc:
        raise TransportError(f"cannot serve metrics on {host}:{port}: {exc}") from exc
    _server = server
    log.info("metrics on http://%s:%d/metrics", host, port)
    return port


def shutdown() -> None:
    global _server
    if _server is not None:
        _server.shutdown()
        _server.server_close()
        _server = None


def counter(
    name: str, doc: str, values: Mapping[tuple[str, ...], float], labels: Iterable[str] = ()
) -> CounterMetricFamily:
    """A counter family ``framebroker_<name>_total`` with one sample per label tuple."""
    family = CounterMetricFamily(PREFIX + name, doc, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), float(value))
    return family


def gauge(
    name: str, doc: str, values: Mapping[tuple[str, ...], float], labels: Iterable[str] = ()
) -> GaugeMetricFamily:
    family = GaugeMetricFamily(PREFIX + name, doc, labels=list(labels))
    for key, value in values.items():
        family.add_metric(list(key), float(value))
    return family


def one(value: float) -> dict[tuple[str, ...], float]:
    """The values of an unlabelled metric."""
    return {(): value}
