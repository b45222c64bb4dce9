"""Pull the newest frame of every stream from a running broker and say how old it is.

    python examples/pull.py [BROKER_HOST] [FRAMES]

BROKER_HOST defaults to $FRAMEBROKER_BROKER or 127.0.0.1 ($FRAMEBROKER_PUBLISH, an
endpoint, overrides it, as for `framebroker consume`); FRAMES (default: no limit) stops
it after that many frames. It also stops when no frame came for 10 s.
"""

import itertools
import os
import sys

import framebroker

host = sys.argv[1] if len(sys.argv) > 1 else os.environ.get("FRAMEBROKER_BROKER", "127.0.0.1")
count = int(sys.argv[2]) if len(sys.argv) > 2 else None
publish = os.environ.get("FRAMEBROKER_PUBLISH")

with framebroker.subscribe("*", host, publish=publish, send_results=False, timeout=10) as frames:
    for frame in itertools.islice(frames, count):
        print(f"{frame.stream} seq {frame.seq} age {frame.age * 1000:.1f} ms", flush=True)
