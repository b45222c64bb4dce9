"""Prometheus metrics of the viewer, read from its hub and counters at scrape time."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge, one


class ViewerCollector:
    def __init__(self, viewer: Any) -> None:
        self.viewer = viewer

    def collect(self) -> Iterator[Metric]:
        v = self.viewer
        yield counter(
            "viewer_frames_in",
            "frames received from the broker per stream",
            {(s,): n for s, n in v.hub.received_by_stream.items()},
            ("stream",),
        )
        yield counter("viewer_malformed", "malformed frames dropped", one(v.hub.malformed))
        yield counter("viewer_frames_sent", "frames sent to browsers", one(v.frames_sent))
        yield gauge("viewer_clients", "open WebSocket and MJPEG connections", one(v.clients))
        if v.recordings is not None:
            yield counter(
                "viewer_recording_frames_sent",
                "recorded frames sent to playback pages",
                one(v.recordings.stills_served),
            )
        if v.results is not None:
            yield counter("viewer_results_read", "result rows read", one(v.results.rows_read))
