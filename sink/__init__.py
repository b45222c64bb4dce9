"""The sink role: receive results, store each once, acknowledge, and read them back.

::

    config.py     SinkConfig: the sink's settings and their flags
    service.py    Sink: the results and acknowledged results ports (PULL, ROUTER), and
                  the control port (ping, stats; framebroker.control_port)
    pending.py    PendingResults: results waiting to be written, one per result key
    record.py     ResultRecord: one stored result, its result map as plain JSON
    base.py       ResultStore, ResultReader, AgeSummary: what every store is and answers
    sql.py        the readers' SQL, once for SQLite (``?``) and PostgreSQL (``%s``)
    store.py      SQLiteStore, FanOutStore: the one home of the SQLite schema;
                  open_writer / open_reader pick SQLite or PostgreSQL from ``--db``
    postgres.py   PostgreSQLStore: the same table on a server several sinks share
    jsonl.py      JsonLinesStore: results as JSON lines
    results.py    ``framebroker results``: print or follow what is stored
    metrics.py    the sink's Prometheus collector
    cli.py        ``framebroker sink`` and ``framebroker results``

Installed as ``framebroker.sink``; imports only the core (``framebroker``).
"""

from .config import SinkConfig
from .jsonl import JsonLinesStore
from .postgres import PostgreSQLStore
from .record import ResultRecord
from .service import Sink, SinkStats
from .store import FanOutStore, ResultReader, ResultStore, SQLiteStore, open_reader, open_writer

__all__ = [
    "FanOutStore",
    "JsonLinesStore",
    "PostgreSQLStore",
    "ResultReader",
    "ResultRecord",
    "ResultStore",
    "SQLiteStore",
    "Sink",
    "SinkConfig",
    "SinkStats",
    "open_reader",
    "open_writer",
]
