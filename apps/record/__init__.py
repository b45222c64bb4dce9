"""Recording: ``framebroker record`` writes streams to disk, ``framebroker export`` reads them.

An application above the roles (it reads the sink's results database for ``--trigger``);
the segment format it writes is the core's (:mod:`framebroker.segment`,
:mod:`framebroker.recording`), which replay (``framebroker produce replay:DIR``) and the
viewer read. See docs/recording.md.
"""

from __future__ import annotations

from .condition import Condition, Subject
from .config import RecordConfig
from .export import export_still, export_video
from .service import Recorder, RecorderStats

__all__ = [
    "Condition",
    "RecordConfig",
    "Recorder",
    "RecorderStats",
    "Subject",
    "export_still",
    "export_video",
]
