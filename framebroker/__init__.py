"""framebroker: cameras in, the newest frame out, results stored.

The library's first page; everything here is also a ``framebroker`` command::

    import framebroker

    # pull: the newest frame of each stream, never a backlog (framebroker consume)
    with framebroker.subscribe("site1/", "broker.lan") as frames:
        for frame in frames:
            print(frame.stream, frame.seq, f"{frame.age * 1000:.0f} ms old")
            frames.send_result(frame, {"mean": float(frame.gray.mean())})

    # push: your own numpy images as a stream (framebroker produce)
    with framebroker.Publisher("lab/scope", "broker.lan") as pub:
        pub.send(image, meta={"objective": "40x"})

    # the services, each in a thread of your program (framebroker broker, sink, ...)
    with framebroker.Broker(framebroker.BrokerConfig()) as broker: ...

Names are imported on first use (PEP 562), so ``import framebroker`` loads neither
ZeroMQ, NumPy nor OpenCV; only what you touch is loaded. The wire protocol (encode and
decode frames and results in any program) is :mod:`framebroker.protocol`; the roles'
other parts are in ``framebroker.broker``, ``.producers``, ``.consumers``, ``.sink``.

This core package imports no role: the roles are named below only as strings.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

from framebroker.errors import (
    CodecError,
    ConfigError,
    FrameBrokerError,
    ImageError,
    ProcessorError,
    ProtocolError,
    RecordingError,
    ShmError,
    SourceError,
    StoreError,
    TransportError,
    VersionError,
)

__version__ = "0.1.0"

# public name -> "module:attribute", imported by __getattr__ on first use
_LAZY = {
    "subscribe": "framebroker.consumers.subscribe:subscribe",
    "Subscription": "framebroker.consumers.subscription:Subscription",
    "Frame": "framebroker.consumers.frame:Frame",
    "Publisher": "framebroker.producers.publisher:Publisher",
    "Broker": "framebroker.broker.service:Broker",
    "BrokerConfig": "framebroker.broker.config:BrokerConfig",
    "Sink": "framebroker.sink.service:Sink",
    "SinkConfig": "framebroker.sink.service:SinkConfig",
    "Producer": "framebroker.producers.producer:Producer",
    "ProducerConfig": "framebroker.producers.config:ProducerConfig",
    "Consumer": "framebroker.consumers.runtime:Consumer",
    "ConsumerConfig": "framebroker.consumers.config:ConsumerConfig",
    "Viewer": "framebroker.viewer.service:Viewer",
    "ViewerConfig": "framebroker.viewer.service:ViewerConfig",
    "ClientSecurity": "framebroker.security:ClientSecurity",
    "ServerSecurity": "framebroker.security:ServerSecurity",
}

__all__ = [
    "Broker",
    "BrokerConfig",
    "ClientSecurity",
    "CodecError",
    "ConfigError",
    "Consumer",
    "ConsumerConfig",
    "Frame",
    "FrameBrokerError",
    "ImageError",
    "ProcessorError",
    "Producer",
    "ProducerConfig",
    "ProtocolError",
    "Publisher",
    "RecordingError",
    "ServerSecurity",
    "ShmError",
    "Sink",
    "SinkConfig",
    "SourceError",
    "StoreError",
    "Subscription",
    "TransportError",
    "VersionError",
    "Viewer",
    "ViewerConfig",
    "__version__",
    "subscribe",
]

if TYPE_CHECKING:  # what type checkers and IDEs see; at run time, __getattr__ below
    from framebroker.broker.config import BrokerConfig
    from framebroker.broker.service import Broker
    from framebroker.consumers.config import ConsumerConfig
    from framebroker.consumers.frame import Frame
    from framebroker.consumers.runtime import Consumer
    from framebroker.consumers.subscribe import subscribe
    from framebroker.consumers.subscription import Subscription
    from framebroker.producers.config import ProducerConfig
    from framebroker.producers.producer import Producer
    from framebroker.producers.publisher import Publisher
    from framebroker.security import ClientSecurity, ServerSecurity
    from framebroker.sink.service import Sink, SinkConfig
    from framebroker.viewer.service import Viewer, ViewerConfig


def __getattr__(name: str) -> Any:
    """Import a public name on first use, then keep it as a plain module attribute."""
    target = _LAZY.get(name)
    if target is None:
        # also how ``from framebroker import codec`` falls through to the submodule
        raise AttributeError(f"module 'framebroker' has no attribute {name!r}")
    module, _, attribute = target.partition(":")
    value = getattr(importlib.import_module(module), attribute)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
