"""The central services: the frame broker (ingest -> publish, last value cache, stream
registry, control port) and the results sink. Imports only ``framebroker``."""

from broker.config import BrokerConfig
from broker.registry import StreamInfo, StreamRegistry
from broker.service import Broker
from broker.sink import Sink, SinkConfig, SinkStats
from broker.sink_jsonl import JsonLinesStore
from broker.stats import BrokerStats
from broker.store import FanOutStore, ResultRecord, ResultStore, SQLiteStore

__all__ = [
    "Broker",
    "BrokerConfig",
    "BrokerStats",
    "FanOutStore",
    "JsonLinesStore",
    "ResultRecord",
    "ResultStore",
    "SQLiteStore",
    "Sink",
    "SinkConfig",
    "SinkStats",
    "StreamInfo",
    "StreamRegistry",
]
