"""Your own processor, run by framebroker's consumer runtime (the library API).

A processor is any callable ``(frame) -> dict | None``. ``frame.header`` has the stream,
seq, capture time, shape...; ``frame.image`` decodes the pixels (a numpy array) on first
use, once; ``frame.gray`` is the grayscale version. Return a map of plain values to store
it in the sink, or None to store nothing.

Run it as a program (library API):

    python examples/brightness.py --broker 127.0.0.1 --streams 'demo/'

or hand the same function to the CLI:

    framebroker consume examples/brightness.py:brightness --streams 'demo/'
"""

from __future__ import annotations

import argparse

from framebroker.config import add_broker_options, resolve_endpoint
from framebroker.consumers import Consumer, ConsumerConfig, Frame
from framebroker.signals import StopOnSignals


def brightness(frame: Frame) -> dict[str, float | int | bool] | None:
    mean = float(frame.gray.mean())
    return {"mean": round(mean, 2), "dark": mean < 40, "seq": frame.header.seq}


def main() -> int:
    parser = argparse.ArgumentParser(description="Report the mean brightness of each frame.")
    add_broker_options(parser, "publish", "results")
    parser.add_argument("--streams", default="*", help="stream pattern (default: all)")
    parser.add_argument("--name", default="brightness", help="consumer name in the sink")
    parser.add_argument("--duration", type=float, default=None, help="stop after N seconds")
    args = parser.parse_args()

    config = ConsumerConfig(
        name=args.name,
        publish=resolve_endpoint(args, "publish"),
        results=resolve_endpoint(args, "results"),
        streams=(args.streams,),
        duration=args.duration,
    )
    consumer = Consumer(config, brightness)
    with StopOnSignals(consumer.stop) as signals:
        consumer.run()
    print(consumer.stats.summary())
    return signals.exit_code


if __name__ == "__main__":
    raise SystemExit(main())
