"""Producers: publish a camera, a video file, a stream URL, a test pattern, or your own
numpy images to the broker.

::

    source.py     FrameSource: the interface of every source (open / read / close)
    capture.py    CaptureSource: device, file or URL through cv2.VideoCapture
    pattern.py    TestPatternSource: synthetic frames, no camera needed
    spec.py       SOURCE strings ("0", "video.mp4", "rtsp://...", "test:640x480@30")
    backoff.py    Backoff: capped exponential delays between reopen attempts
    grabber.py    Grabber: the grab thread, newest frame only, reopen and watchdog
    config.py     ProducerConfig: validated, frozen
    producer.py   Producer: the service (start / run / stop / close, framebroker.service)
    publisher.py  Publisher: your own images, one ``send(image)`` at a time (the library)
    cli.py        ``framebroker produce``

Library use::

    from . import Producer, ProducerConfig

    producer = Producer(ProducerConfig(source="test:640x480@30", stream="cam1",
                                       ingest="tcp://broker.lan:5555"))
    producer.run()   # until producer.stop() from another thread or a signal handler

Your own images, from your own loop (``framebroker.Publisher``)::

    with Publisher("lab/scope", "broker.lan") as pub:
        pub.send(image, meta={"objective": "40x"})   # a numpy array; never blocks

(``encoding="raw"``: consumers on this host read the frames from its shared-memory ring.)

Your own source run by the producer: subclass FrameSource and pass ``source=MySource``
(a factory, called again on every reopen) to Producer.
"""

from .backoff import Backoff
from .capture import CaptureSource
from .config import ProducerConfig
from .grabber import Grabbed, Grabber, GrabberState
from .pattern import TestPatternSource
from .producer import Producer, ProducerStats
from .publisher import Publisher, PublisherConfig
from .source import FrameSource
from .spec import (
    SourceSpec,
    default_stream_name,
    make_source,
    open_source,
    parse_source,
)

__all__ = [
    "Backoff",
    "CaptureSource",
    "FrameSource",
    "Grabbed",
    "Grabber",
    "GrabberState",
    "Producer",
    "ProducerConfig",
    "ProducerStats",
    "Publisher",
    "PublisherConfig",
    "SourceSpec",
    "TestPatternSource",
    "default_stream_name",
    "make_source",
    "open_source",
    "parse_source",
]
