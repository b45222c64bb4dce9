"""Prometheus metrics of ``framebroker record`` (``--metrics-port``), read at scrape time.

Per stream: frames and bytes written, frames dropped by reason (``write_error``: refused
by the file system, a full disk; ``write_paused``: arrived during the second's pause after
such an error), frames missed upstream (seq gaps: never received), frames skipped (with
``--trigger``: left the pre-event buffer outside any event, by design), segments closed
and open. Overall: messages received and malformed, segments removed by retention,
events opened, and with ``--trigger-results`` the results received, matched and malformed
on the trigger port. The scrape runs in the metrics server's thread: it reads plain
counters and copies of the recorder's dicts, never the recorder's sockets.
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

from prometheus_client.core import Metric

from framebroker.metrics import counter, gauge, one


class RecorderCollector:
    def __init__(self, recorder: Any) -> None:
        self.recorder = recorder

    def collect(self) -> Iterator[Metric]:
        r = self.recorder
        writers = r.writers()
        stream = ("stream",)
        yield counter(
            "record_frames_written",
            "frames stored in segments",
            {(w.stream,): w.written for w in writers},
            stream,
        )
        yield counter(
            "record_bytes_written",
            "bytes stored in segments (records: length, CRC and the frame message)",
            {(w.stream,): w.bytes for w in writers},
            stream,
        )
        yield counter(
            "record_frames_dropped",
            "frames received but not stored, by reason (write_error: refused by the file "
            "system; write_paused: arrived during the pause after a write error)",
            {(w.stream, reason): n for w in writers for reason, n in w.dropped_by_reason.items()},
            ("stream", "reason"),
        )
        yield counter(
            "record_frames_missed",
            "frames never received (seq gaps per stream and session)",
            {(s,): n for s, n in dict(r.missed_by_stream).items()},
            stream,
        )
        yield counter(
            "record_segments_closed",
            "segments sealed",
            {(w.stream,): w.segments_closed for w in writers},
            stream,
        )
        yield gauge(
            "record_segments_open",
            "segments being written",
            {(w.stream,): int(w.open_segment is not None) for w in writers},
            stream,
        )
        yield counter(
            "record_segments_removed", "segments removed by retention", one(r.segments_removed)
        )
        stats = r.stats()
        yield counter("record_received", "frame messages received", one(stats.received))
        yield counter("record_malformed", "messages that were not frames", one(stats.malformed))
        yield from self._trigger()

    def _trigger(self) -> Iterator[Metric]:
        r = self.recorder
        gate = r.gate
        if gate is None:
            return
        yield counter("record_events", "events opened by a matching result", one(gate.events))
        yield counter(
            "record_frames_skipped",
            "frames that left the pre-event buffer outside any event (not recorded, by design)",
            {(s,): n for s, n in dict(gate.skipped).items()},
            ("stream",),
        )
        port = r.trigger_port
        if port is not None:
            yield counter(
                "record_trigger_results",
                "results received on the trigger port",
                one(port.received),
            )
            yield counter(
                "record_trigger_matched", "of those, results matching --trigger", one(port.matched)
            )
            yield counter(
                "record_trigger_malformed",
                "messages on the trigger port that were not results",
                one(port.malformed),
            )
