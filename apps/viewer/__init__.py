"""``framebroker view``: a browser viewer of the live streams, with result overlays, and of
recordings (``--recordings DIR``: :mod:`.recordings`, :mod:`.playback`).

::

    broker :5556 (SUB, every stream) --> FrameHub: newest frame per stream only
    broker :5558 (control "streams")  --> the stream list (state, size, fps, age)
    sink's SQLite (--db, read-only)   --> ResultsReader: newest result per (stream, consumer)
                                             |
    aiohttp: /  (index), /view?stream=S (live page), /ws (WebSocket: one frame per "next"),
             /stream.mjpg?stream=S (MJPEG), /snapshot.jpg?stream=S, /api/streams (JSON)

A browser gets frames over a WebSocket by credit: it asks for the next frame only after it
has drawn the last one, and the server then sends the newest frame it has. A slow browser
therefore sees fewer frames, never older ones: nothing queues anywhere.
"""

from .config import ViewerConfig
from .hub import FrameHub, LatestFrame
from .results import ResultsReader
from .service import Viewer

__all__ = ["FrameHub", "LatestFrame", "ResultsReader", "Viewer", "ViewerConfig"]
