#!/usr/bin/env python3
"""Write the image's sample video: a few seconds of moving shapes, made here, not downloaded.

    python3 make_sample_video.py OUT.avi [WIDTHxHEIGHT] [FPS] [SECONDS]

Motion-JPEG in AVI, which OpenCV writes and reads without extra codecs. Two balls bounce
over a gradient with a clock-like sweep, so `motion` has something to find.
"""

from __future__ import annotations

import math
import sys

import cv2
import numpy as np


def frames(width: int, height: int, count: int):  # type: ignore[no-untyped-def]
    ramp = np.linspace(30, 120, width, dtype=np.uint8)
    background = np.dstack([np.tile(ramp, (height, 1))] * 3)
    radius = max(4, min(width, height) // 10)
    for i in range(count):
        image = background.copy()
        t = i / count * 2 * math.pi
        for phase, colour in ((0.0, (0, 200, 255)), (math.pi / 2, (255, 120, 0))):
            x = int((width - 2 * radius) * (0.5 + 0.5 * math.sin(2 * t + phase))) + radius
            y = int((height - 2 * radius) * (0.5 + 0.5 * math.cos(3 * t + phase))) + radius
            cv2.circle(image, (x, y), radius, colour, -1)
        centre = (width // 2, height // 2)
        reach = radius * 2
        hand = (int(centre[0] + reach * math.cos(t)), int(centre[1] + reach * math.sin(t)))
        cv2.line(image, centre, hand, (255, 255, 255), 2)
        cv2.putText(
            image,
            f"sample {i:04d}",
            (8, height - 10),
            cv2.FONT_HERSHEY_SIMPLEX,
            0.5,
            (255, 255, 255),
            1,
            cv2.LINE_AA,
        )
        yield image


def main(argv: list[str]) -> int:
    out = argv[0]
    width, height = (int(v) for v in (argv[1] if len(argv) > 1 else "320x240").split("x"))
    fps = float(argv[2]) if len(argv) > 2 else 15.0
    seconds = float(argv[3]) if len(argv) > 3 else 8.0
    writer = cv2.VideoWriter(out, cv2.VideoWriter_fourcc(*"MJPG"), fps, (width, height))
    if not writer.isOpened():
        print(f"cannot write {out}", file=sys.stderr)
        return 1
    count = int(fps * seconds)
    for image in frames(width, height, count):
        writer.write(image)
    writer.release()
    check = cv2.VideoCapture(out)
    ok = check.isOpened() and int(check.get(cv2.CAP_PROP_FRAME_COUNT)) == count
    check.release()
    print(f"{out}: {count} frames {width}x{height} at {fps:g} fps" if ok else f"bad {out}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
