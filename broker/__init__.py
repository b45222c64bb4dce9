"""The broker role: ingest from producers, publish to consumers, the newest frame per
stream, the stream registry, the control port and the work port of work groups.

Installed as ``framebroker.broker``; imports only the core (``framebroker``).
"""

from .config import BrokerConfig
from .registry import StreamInfo, StreamRegistry
from .service import Broker
from .stats import BrokerStats

__all__ = ["Broker", "BrokerConfig", "BrokerStats", "StreamInfo", "StreamRegistry"]
