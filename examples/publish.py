"""Publish numpy images as a stream: a white bar sweeping over a gray gradient.

    python examples/publish.py [BROKER_HOST] [FRAMES]

BROKER_HOST defaults to $FRAMEBROKER_BROKER or 127.0.0.1 ($FRAMEBROKER_INGEST, an
endpoint, overrides it, as for `framebroker produce`); FRAMES (default: no limit) stops
it after that many frames, sent at 30 per second.
"""

import itertools
import os
import sys
import time

import numpy as np

import framebroker

host = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FRAMEBROKER_BROKER", "127.0.0.1")
count = int(sys.argv[2]) if len(sys.argv) > 2 else None
ingest = os.environ.get("FRAMEBROKER_INGEST")

gradient = np.tile(np.linspace(0, 160, 320, dtype=np.uint8), (240, 1))
with framebroker.Publisher("example/numpy", host, ingest=ingest, meta={"by": "publish.py"}) as pub:
    for i in itertools.islice(itertools.count(), count):
        image = np.dstack([gradient] * 3)  # BGR, 240x320
        image[:, (i * 4) % 320 : (i * 4) % 320 + 8] = 255
        pub.send(image, meta={"frame": str(i)})
        time.sleep(1 / 30)
