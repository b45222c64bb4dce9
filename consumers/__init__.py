"""consumers: run a processor on the newest frame of each stream, results to the sink.

>>> from consumers import Consumer, ConsumerConfig
>>> def brightness(frame):
...     return {"mean": float(frame.gray.mean())}
>>> consumer = Consumer(ConsumerConfig(streams=("cam1",)), brightness)
>>> consumer.run()  # doctest: +SKIP  (blocks; stop() from another thread stops it)
"""

from .config import ConsumerConfig, default_name, parse_patterns
from .frame import Frame
from .processors import Processor, builtin_names, load_processor
from .runtime import Consumer
from .slots import LatestSlots, Offer
from .stats import ConsumerStats
from .workers import WorkerPool

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "Frame",
    "LatestSlots",
    "Offer",
    "Processor",
    "WorkerPool",
    "builtin_names",
    "default_name",
    "load_processor",
    "parse_patterns",
]
