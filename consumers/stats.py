"""ConsumerStats: what a consumer counts, and how old the frames it processed were.

Each counter is written by one thread only (the receive thread or the processing loop),
so no lock is needed; readers see a consistent-enough value at any time.
"""

from __future__ import annotations

import statistics
from collections import deque
from dataclasses import dataclass, field
from typing import Any

COUNTERS = (
    "received",  # every message taken off the SUB socket (system topics excepted)
    "processed",  # frames the processor completed on
    "skipped",  # frames superseded by a newer one of their stream before processing
    "duplicates",  # frames dropped as already seen (same session, seq <= last seen)
    "malformed",  # messages that did not decode as frames
    "processor_errors",  # processor calls that raised or returned a non-map
    "results_sent",  # results queued to the sink
    "results_acked",  # results the sink acknowledged as stored (acknowledged delivery)
    "results_resent",  # results sent again for want of an acknowledgement
    "results_dropped",  # results dropped because the sink was unreachable
    "shm_frames",  # frames read from shared memory (the rest came over the network)
    "torn",  # shared-memory frames overwritten before or while being processed: dropped
)


@dataclass
class ConsumerStats:
    received: int = 0
    processed: int = 0
    skipped: int = 0
    duplicates: int = 0
    malformed: int = 0
    processor_errors: int = 0
    results_sent: int = 0
    results_acked: int = 0
    results_resent: int = 0
    results_dropped: int = 0
    shm_frames: int = 0
    torn: int = 0
    ages_kept: int = 1000
    ages_ns: deque[int] = field(init=False)

    def __post_init__(self) -> None:
        # Frame age at processing start (t_start - t_capture) of the most recent frames.
        self.ages_ns = deque(maxlen=self.ages_kept)

    def recent_ages_ms(self) -> list[float]:
        return [age / 1e6 for age in tuple(self.ages_ns)]

    def snapshot(self) -> dict[str, Any]:
        """Counters plus median/max frame age (ms) over the recent frames."""
        out: dict[str, Any] = {name: getattr(self, name) for name in COUNTERS}
        ages = self.recent_ages_ms()
        out["age_ms_median"] = round(statistics.median(ages), 1) if ages else None
        out["age_ms_max"] = round(max(ages), 1) if ages else None
        return out

    def summary(self) -> str:
        """One log line."""
        s = self.snapshot()
        age = (
            f"frame age median {s['age_ms_median']} ms, max {s['age_ms_max']} ms"
            if s["age_ms_median"] is not None
            else "no frames processed"
        )
        counts = ", ".join(f"{name.replace('_', ' ')} {s[name]}" for name in COUNTERS)
        return f"{counts}; {age}"
