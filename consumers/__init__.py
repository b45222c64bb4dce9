"""consumers: the newest frame of each stream, to a processor or to your own loop.

Pull them (``framebroker.subscribe``, subscribe.py / subscription.py): iterate, and send
results to the sink if you like:

>>> import framebroker
>>> with framebroker.subscribe("cam1") as frames:  # doctest: +SKIP
...     for frame in frames:
...         frames.send_result(frame, {"mean": float(frame.gray.mean())})

Or have them pushed to a processor (``framebroker consume``, runtime.py):

>>> from framebroker.consumers import Consumer, ConsumerConfig
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
from .subscribe import subscribe
from .subscription import Subscription
from .workers import WorkerPool

__all__ = [
    "Consumer",
    "ConsumerConfig",
    "ConsumerStats",
    "Frame",
    "LatestSlots",
    "Offer",
    "Processor",
    "Subscription",
    "WorkerPool",
    "builtin_names",
    "default_name",
    "load_processor",
    "parse_patterns",
    "subscribe",
]
