"""The tail of every long-running command (broker, sink, produce, consume, view).

The command parses its flags and builds its service; :func:`run_service` does the rest
the same way for all of them: the service's Prometheus collector on ``--metrics-port``
(served by :func:`framebroker.cli.main`), SIGINT/SIGTERM calling ``stop()``
(:class:`~framebroker.signals.StopOnSignals`), ``run()`` until stopped, ``close()`` always,
and the exit code: 130 after Ctrl-C, 0 otherwise. An error escaping ``run()`` reaches
``cli.main``, which turns it into exit code 1 (2 for a ConfigError) with its message.
"""

from __future__ import annotations

from framebroker import metrics
from framebroker.service import Lifecycle
from framebroker.signals import StopOnSignals


def run_service(service: Lifecycle, collector: metrics.Collector | None = None) -> int:
    """Run ``service`` in this thread until it ends or a signal stops it; the exit code."""
    if collector is not None:
        metrics.expose(collector)
    with StopOnSignals(service.stop) as signals:
        try:
            service.run()
        finally:
            service.close()
    return signals.exit_code
