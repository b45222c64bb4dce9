"""The sink role: receive results, store each once, acknowledge, and read them back.

::

    config.py     SinkConfig: the sink's settings and their flags
    service.py    Sink: the results and acknowledged results ports (PULL, ROUTER), and
                  the control port (ping, stats; framebroker.control_port)
    pending.py    PendingResults: results waiting to be written, one per result key
    record.py     ResultRecord: one stored result, its result map as plain JSON
    store.py      ResultStore, SQLiteStore, FanOutStore: the one home of the SQLite schema,
                  its writer and its reader (SQLiteStore.open_existing)
    jsonl.py      JsonLinesStore: results as JSON lines
    results.py    ``framebroker results``: print or follow what is stored
    metrics.py    the sink's Prometheus collector
    cli.py        ``framebroker sink`` and ``framebroker results``

Installed as ``framebroker.sink``; imports only the core (``framebroker``).
"""

from .config import SinkConfig
from .jsonl import JsonLinesStore
from .record import ResultRecord
from .service import Sink, SinkStats
from .store import FanOutStore, ResultStore, SQLiteStore

__all__ = [
    "FanOutStore",
    "JsonLinesStore",
    "ResultRecord",
    "ResultStore",
    "SQLiteStore",
    "Sink",
    "SinkConfig",
    "SinkStats",
]
