"""framebroker: the shared core (protocol, config, transport, errors, CLI entry).

Role packages (``broker``, ``producers``, ``consumers``) import from here and never from
each other.
"""

from framebroker.errors import (
    CodecError,
    ConfigError,
    FrameBrokerError,
    ProcessorError,
    ProtocolError,
    SourceError,
    StoreError,
    TransportError,
    VersionError,
)
from framebroker.protocol import (
    FrameHeader,
    FrameMessage,
    ResultMessage,
    decode_frame,
    decode_result,
    encode_frame,
    encode_result,
    subscription_for,
    topic_for,
)

__version__ = "0.1.0"

__all__ = [
    "CodecError",
    "ConfigError",
    "FrameBrokerError",
    "FrameHeader",
    "FrameMessage",
    "ProcessorError",
    "ProtocolError",
    "ResultMessage",
    "SourceError",
    "StoreError",
    "TransportError",
    "VersionError",
    "__version__",
    "decode_frame",
    "decode_result",
    "encode_frame",
    "encode_result",
    "subscription_for",
    "topic_for",
]
