"""Scenario 5, codec: JPEG encode/decode at 480p/720p/1080p, ours vs cv2 vs simplejpeg.

"ours" is :mod:`framebroker.codec` as producers (``encode``) and consumers (``decode``)
call it. The image is a synthetic scene (smooth multi-scale noise, hard-edged shapes and
a little fine grain) whose JPEG size at q80 is in the range of a camera picture, made
from a fixed seed; no image file is needed. Each cell is the median of interleaved
repetitions (every decoder takes its turn in each round), in milliseconds.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from typing import Any

import cv2
import numpy as np

from benchmarks.numbers import ratio
from benchmarks.report import Options, Result, Target
from framebroker import codec
from framebroker.protocol import FrameHeader

RESOLUTIONS = {"480p": (640, 480), "720p": (1280, 720), "1080p": (1920, 1080)}
QUALITY = 80
_REDUCED = {
    2: cv2.IMREAD_REDUCED_COLOR_2,
    4: cv2.IMREAD_REDUCED_COLOR_4,
    8: cv2.IMREAD_REDUCED_COLOR_8,
}


def scene(width: int, height: int, seed: int = 7) -> np.ndarray:
    """A deterministic camera-like BGR picture."""
    rng = np.random.default_rng(seed)
    image = np.full((height, width, 3), 110.0, np.float32)
    for cell, amplitude in ((96, 70.0), (24, 30.0), (6, 12.0)):
        small = rng.normal(0, 1, (max(2, height // cell), max(2, width // cell), 3))
        image += (
            cv2.resize(small.astype(np.float32), (width, height), interpolation=cv2.INTER_CUBIC)
            * amplitude
        )
    for _ in range(12):
        x, y = int(rng.integers(0, width)), int(rng.integers(0, height))
        w, h = (
            int(rng.integers(width // 20, width // 4)),
            int(rng.integers(height // 20, height // 4)),
        )
        colour = tuple(float(c) for c in rng.integers(0, 255, 3))
        cv2.rectangle(image, (x, y), (x + w, y + h), colour, -1)
    image += rng.normal(0, 2.0, image.shape).astype(np.float32)
    return np.clip(image, 0, 255).astype(np.uint8)


def _time(funcs: dict[str, Callable[[], Any]], rounds: int) -> dict[str, float]:
    """Median ms per call, the functions interleaved round by round."""
    samples: dict[str, list[float]] = {name: [] for name in funcs}
    for f in funcs.values():
        f()  # warm up
    for _ in range(rounds):
        for name, f in funcs.items():
            t = time.perf_counter()
            f()
            samples[name].append((time.perf_counter() - t) * 1000)
    return {name: statistics.median(v) for name, v in samples.items()}


def _header(width: int, height: int) -> FrameHeader:
    return FrameHeader(
        stream="bench",
        session=1,
        seq=0,
        t_capture=0,
        t_publish=0,
        encoding="jpeg",
        shape=(height, width, 3),
    )


def measure(width: int, height: int, rounds: int) -> dict[str, Any]:
    import simplejpeg

    image = scene(width, height)
    jpeg = codec.encode(image, "jpeg", QUALITY).payload
    buf = np.frombuffer(jpeg, np.uint8)
    header = _header(width, height)
    encode = _time(
        {
            "ours": lambda: codec.encode(image, "jpeg", QUALITY),
            "cv2": lambda: cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, QUALITY]),
            "simplejpeg": lambda: simplejpeg.encode_jpeg(
                image, QUALITY, colorspace="BGR", colorsubsampling="420"
            ),
        },
        rounds,
    )
    decode = _time(
        {
            "ours": lambda: codec.decode(header, jpeg),
            "cv2": lambda: cv2.imdecode(buf, cv2.IMREAD_COLOR),
            "simplejpeg": lambda: simplejpeg.decode_jpeg(jpeg, colorspace="BGR"),
        },
        rounds,
    )
    reduced: dict[int, dict[str, float]] = {}
    for factor, flag in _REDUCED.items():
        h, w = -(-height // factor), -(-width // factor)
        reduced[factor] = _time(
            {
                "ours": lambda f=factor: codec.decode(header, jpeg, f),  # type: ignore[misc]
                "cv2": lambda fl=flag: cv2.imdecode(buf, fl),  # type: ignore[misc]
                "simplejpeg": lambda h=h, w=w: simplejpeg.decode_jpeg(  # type: ignore[misc]
                    jpeg, colorspace="BGR", min_height=h, min_width=w
                ),
            },
            rounds,
        )
    return {"jpeg_bytes": len(jpeg), "encode": encode, "decode": decode, "reduced": reduced}


def run(opts: Options) -> Result:
    resolutions = opts.pick({"480p": RESOLUTIONS["480p"]}, RESOLUTIONS)
    rounds = opts.pick(5, 40)
    results = {label: measure(w, h, rounds) for label, (w, h) in resolutions.items()}
    rows: list[list[Any]] = []
    targets: list[Target] = []
    for label, m in results.items():
        for op, cells in (("encode", m["encode"]), ("decode", m["decode"])):
            rows.append(_row(label, op, m["jpeg_bytes"], cells))
        for factor, cells in m["reduced"].items():
            rows.append(_row(label, f"decode 1/{factor}", m["jpeg_bytes"], cells))
        targets.append(
            Target(
                f"JPEG decode {label}: ours / simplejpeg time",
                ratio(m["decode"]["ours"], m["decode"]["simplejpeg"]),
                1.05,
                "lower",
            )
        )
    return Result(
        name="codec",
        title=f"JPEG codec, q{QUALITY} (ms per image, median)",
        columns=[
            "size",
            "operation",
            "JPEG kB",
            "ours",
            "cv2",
            "simplejpeg",
            "ours/cv2",
            "ours/simplejpeg",
        ],
        rows=rows,
        data={"results": results, "rounds": rounds},
        targets=targets,
        notes=[
            "ours = framebroker.codec (encode: cv2.imencode; decode: simplejpeg, cv2 as "
            "fallback); the decode target allows 5% for timing noise around 1.0",
            "decode 1/N: libjpeg's scaled decode (cv2.IMREAD_REDUCED_COLOR_N, simplejpeg "
            "min_height/min_width), as Frame.decode(N) does",
        ],
    )


def _row(label: str, op: str, size: int, cells: dict[str, float]) -> list[Any]:
    return [
        label,
        op,
        size / 1000,
        cells["ours"],
        cells["cv2"],
        cells["simplejpeg"],
        ratio(cells["ours"], cells["cv2"]),
        ratio(cells["ours"], cells["simplejpeg"]),
    ]
