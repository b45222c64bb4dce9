"""consumers: run a processor on the newest frame of each stream, results to the sink.

>>> from consumers import Consumer, ConsumerConfig
>>> def brightness(frame):
...     return {"mean": float(frame.gray.mean())}
>>> consumer = Consumer(ConsumerConfig(streams=("cam1",)), brightness)
>>> consumer.run()  # doctest: +SKIP  (blocks; close() from another thread stops it)
"""

from consumers.config import ConsumerConfig, default_name, parse_patterns
from consumers.frame import Frame
from consumers.processors import Processor, builtin_names, load_processor
from consumers.runtime import Consumer
from consumers.slots import LatestSlots, Offer
from consumers.stats import ConsumerStats
from consumers.workers import WorkerPool

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
