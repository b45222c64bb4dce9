"""Scenario 7, same-host shared memory: raw frames to 1, 4, 8 consumers on one host.

One ``Producer`` (``test:WxH@30``, raw) publishes through our broker; N consumers
(``framebroker.subscribe``, each in its own process) take the newest frame and touch its
pixels (the mean of one row). Paths:

- ``shm``: ``--shm only``: the producer writes a ring in /dev/shm, only descriptors
  cross the broker; consumers read the slots in place;
- ``tcp`` / ``ipc``: frame messages through the broker, consumers with ``shm=False``.

Reported per run: frames/s per consumer, delivered / written (the producer's frames in
the window, from the seq range the consumers saw), frame age at processing start (p50,
p99), and CPU per delivered frame (producer + broker + consumers, user + system, over the
whole run, divided by the frames all consumers got). The seeds' transports are measured
in the same run at 1080p with one reader: ``multiprocessing.Queue`` and
``Manager().list`` (the newest of a list the writer appends to), and the memcpy limit (one
frame copied in this process).

Targets (issue 17): at 1080p and 4K with up to 8 consumers, every consumer >= 0.95x the
frames written; age p99 <= 5 ms (the consumers do almost no work).
"""

from __future__ import annotations

import contextlib
import multiprocessing as mp
import os
import resource
import socket
import tempfile
import time
from typing import Any

import numpy as np

from benchmarks.numbers import median, percentile
from benchmarks.report import Options, Result, Target

SIZES = {"720p": (1280, 720), "1080p": (1920, 1080), "4K": (3840, 2160)}
FPS = 30
WARM_S = 2.0


def _broker(ready: Any, stop: Any, ingest: str, publish: str) -> None:
    from framebroker.broker import Broker, BrokerConfig

    config = BrokerConfig(
        ingest=ingest, publish=publish, control="tcp://127.0.0.1:0", work="tcp://127.0.0.1:0"
    )
    with Broker(config).run_in_thread():
        ready.set()
        stop.wait()


def _producer(stop: Any, ingest: str, size: tuple[int, int], shm: str) -> None:
    from framebroker.producers import Producer, ProducerConfig

    source = f"test:{size[0]}x{size[1]}@{FPS}"
    config = ProducerConfig(source=source, stream="bench", ingest=ingest, encoding="raw", shm=shm)
    with Producer(config).run_in_thread():
        stop.wait()


def _consumer(out: Any, publish: str, shm: bool, start: float, window: float) -> None:
    import framebroker

    usage0 = resource.getrusage(resource.RUSAGE_SELF)
    seqs: list[int] = []
    ages: list[float] = []
    total = 0
    end = start + window
    with framebroker.subscribe(
        "bench", publish=publish, send_results=False, shm=shm, timeout=window + 30
    ) as sub:
        for frame in sub:
            float(frame.image[0].mean())  # touch the pixels
            total += 1
            now = time.time()
            if now >= end:
                break
            if now >= start and frame.intact:
                seqs.append(frame.seq)
                ages.append((frame.t_start - frame.t_capture) / 1e6)
    usage = resource.getrusage(resource.RUSAGE_SELF)
    cpu = usage.ru_utime - usage0.ru_utime + usage.ru_stime - usage0.ru_stime
    out.put({"seqs": seqs, "ages": ages, "total": total, "cpu": cpu})


def measure(path: str, size: tuple[int, int], consumers: int, window: float) -> dict[str, Any]:
    """One run: broker, producer and ``consumers`` processes; the numbers."""
    ctx = mp.get_context("spawn")
    folder = tempfile.mkdtemp(prefix="fb-bench-")
    if path == "ipc":
        ingest, publish = f"ipc://{folder}/ingest", f"ipc://{folder}/publish"
    else:
        ingest = f"tcp://127.0.0.1:{free_port()}"
        publish = f"tcp://127.0.0.1:{free_port()}"
    ready, stop, out = ctx.Event(), ctx.Event(), ctx.Queue()
    children_cpu0 = _children_cpu()
    broker = ctx.Process(target=_broker, args=(ready, stop, ingest, publish))
    broker.start()
    ready.wait(30)
    shm_mode = "only" if path == "shm" else "off"
    producer = ctx.Process(target=_producer, args=(stop, ingest, size, shm_mode))
    producer.start()
    start = time.time() + WARM_S + 3.0  # spawn takes a while: all up before the window
    procs = [
        ctx.Process(target=_consumer, args=(out, publish, path == "shm", start, window))
        for _ in range(consumers)
    ]
    for p in procs:
        p.start()
    results = [out.get(timeout=window + 120) for _ in procs]
    for p in procs:
        p.join(30)
    stop.set()
    producer.join(30)
    broker.join(30)
    for p in (*procs, producer, broker):
        if p.is_alive():
            p.kill()
            p.join()
    with contextlib.suppress(OSError):
        for name in os.listdir(folder):
            os.unlink(os.path.join(folder, name))
        os.rmdir(folder)
    cpu = _children_cpu() - children_cpu0
    return _summary(results, cpu, window)


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def _summary(results: list[dict[str, Any]], cpu: float, window: float) -> dict[str, Any]:
    every = [s for r in results for s in r["seqs"]]
    written = (max(every) - min(every) + 1) if every else 0
    got = [len(r["seqs"]) for r in results]
    ages = [a for r in results for a in r["ages"]]
    delivered = sum(r["total"] for r in results)
    return {
        "fps": median([g / window for g in got]),
        "written_fps": written / window,
        "ratio_min": min(got) / written if written else float("nan"),
        "age_p50": median(ages),
        "age_p99": percentile(ages, 99),
        "cpu_ms_per_frame": 1000 * cpu / delivered if delivered else float("nan"),
    }


# --- the seeds' transports and the memcpy limit ----------------------------------------


def _queue_writer(q: Any, stop: Any, shape: tuple[int, ...]) -> None:
    frame = np.zeros(shape, np.uint8)
    while not stop.is_set():
        frame[0, 0, 0] = (int(frame[0, 0, 0]) + 1) % 256
        with contextlib.suppress(Exception):
            q.put((time.time_ns(), frame), timeout=0.1)


def _list_writer(shared: Any, stop: Any, shape: tuple[int, ...]) -> None:
    frame = np.zeros(shape, np.uint8)
    while not stop.is_set():
        shared.append((time.time_ns(), frame))
        if len(shared) > 2:
            del shared[0]


def seeds(shape: tuple[int, ...], window: float) -> dict[str, dict[str, float]]:
    """multiprocessing.Queue and Manager().list, one writer and one reader (this one)."""
    ctx = mp.get_context("spawn")
    out: dict[str, dict[str, float]] = {}
    stop = ctx.Event()
    q = ctx.Queue(maxsize=2)
    writer = ctx.Process(target=_queue_writer, args=(q, stop, shape))
    writer.start()
    q.get(timeout=30)
    out["multiprocessing.Queue"] = _drain(lambda: q.get(timeout=5), window)
    stop.set()
    with contextlib.suppress(Exception):
        while True:
            q.get(timeout=0.2)
    writer.join(10)
    with ctx.Manager() as manager:
        shared = manager.list()
        stop = ctx.Event()
        writer = ctx.Process(target=_list_writer, args=(shared, stop, shape))
        writer.start()
        while len(shared) == 0:
            time.sleep(0.01)
        out["Manager().list"] = _drain(lambda: shared[-1], window)
        stop.set()
        writer.join(10)
    return out


def _drain(get: Any, window: float) -> dict[str, float]:
    ages: list[float] = []
    end = time.monotonic() + window
    last = None
    while time.monotonic() < end:
        t, frame = get()
        if t == last:
            continue
        last = t
        ages.append((time.time_ns() - t) / 1e6)
        float(frame[0].mean())
    return {"fps": len(ages) / window, "age_p50": median(ages), "age_p99": percentile(ages, 99)}


def memcpy_fps(shape: tuple[int, ...], seconds: float = 1.0) -> float:
    src = np.ones(shape, np.uint8)
    dst = np.empty_like(src)
    n, end = 0, time.monotonic() + seconds
    while time.monotonic() < end:
        np.copyto(dst, src)
        n += 1
    return n / seconds


def run(opts: Options) -> Result:
    window = opts.pick(2.0, 4.0)
    sizes = opts.pick(["1080p"], ["720p", "1080p", "4K"])
    counts = opts.pick([1], [1, 4, 8])
    paths = opts.pick(["shm", "tcp"], ["shm", "tcp", "ipc"])
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    worst: dict[str, float] = {}
    for label in sizes:
        size = SIZES[label]
        copy = memcpy_fps((size[1], size[0], 3))
        for n in counts:
            for path in paths:
                m = measure(path, size, n, window)
                data[f"{path}-{label}-{n}"] = m
                numbers = [m[k] for k in ("written_fps", "fps", "ratio_min", "age_p50", "age_p99")]
                rows.append([label, n, path, *numbers, m["cpu_ms_per_frame"], copy])
                if path == "shm" and label != "720p":
                    worst["ratio"] = min(worst.get("ratio", 9.0), m["ratio_min"])
                    worst["p99"] = max(worst.get("p99", 0.0), m["age_p99"])
    shape = (1080, 1920, 3)
    seed = seeds(shape, window)
    data["seeds_1080p"] = seed
    extra = [[name, v["fps"], v["age_p50"], v["age_p99"]] for name, v in seed.items()]
    return Result(
        name="shm",
        title="Same-host raw frames: shared memory vs the broker (tcp, ipc) and the seeds",
        columns=[
            "size",
            "consumers",
            "path",
            "written/s",
            "frames/s each (median)",
            "worst consumer / written",
            "age p50 ms",
            "age p99 ms",
            "CPU ms per delivered frame",
            "memcpy limit frames/s",
        ],
        rows=rows,
        data=data,
        extra_tables=[
            (
                "The seeds' transports at 1080p, one writer and one reader:",
                ["transport", "frames/s", "age p50 ms", "age p99 ms"],
                extra,
            )
        ],
        targets=[
            Target(
                "shm: worst consumer / frames written (1080p, 4K)",
                worst.get("ratio"),
                0.95,
                "higher",
            ),
            Target("shm: frame age p99 (ms)", worst.get("p99"), 5.0, "lower", unit="ms"),
        ],
        notes=[
            "shm runs use `produce --shm only` (no frame message to the broker); tcp/ipc runs "
            "`--shm off` with consumers `shm=False`. CPU counts producer, broker and consumers "
            "over the whole run (synthetic frame drawing included), per frame delivered.",
        ],
    )
