"""The 100 ms-per-frame roles: our Consumer (fan-out or a work group's worker) and imagezmq.

See roles.py for how roles run; these are the ones that need the project's consumer.
"""

from __future__ import annotations

import signal
import time
from collections.abc import Callable
from typing import Any

from benchmarks.roles import Counters, Role, Stop, say_ready


def _slow_work() -> None:
    time.sleep(0.1)  # the consumer's 100 ms of work per frame


def fresh_consumer(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Our Consumer, 100 ms per frame; ages (t_start - t_capture) for ``duration`` s."""
    from framebroker.consumers import Consumer, ConsumerConfig

    samples: list[tuple[float, str, float]] = []
    first: dict[str, float] = {}
    state: dict[str, float] = {}
    consumer: Consumer | None = None

    def process(frame: Any) -> dict[str, Any]:
        _slow_work()
        return {"seq": frame.seq}

    def on_result(result: Any) -> None:
        now = time.monotonic()
        first.setdefault(result.stream, now)
        if len(first) < a["streams"]:
            return
        t0 = state.setdefault("t0", now)
        samples.append((now - t0, result.stream, result.age_ns / 1e6))
        if now - t0 >= a["duration"] and consumer is not None:
            consumer.stop()

    config = ConsumerConfig(
        name="bench", publish=a["connect"], results=None, streams=(a["pattern"],)
    )
    consumer = Consumer(config, process, on_result=on_result)
    consumer.start()
    say_ready()
    try:
        consumer.run()
    except Stop:
        consumer.close()
    return {"samples": samples, "stats": consumer.stats.summary()}


def work_consumer(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Our Consumer, 100 ms per frame, fan-out or (with ``group``) a work group's worker.

    Records (monotonic time, stream, seq, age ms) of every frame it starts on; ``c.n``
    counts frames processed and ``c.extra`` frames received, for the parent's marks.
    """
    from framebroker.consumers import Consumer, ConsumerConfig

    samples: list[tuple[float, str, int, float]] = []
    consumer: Consumer | None = None

    def process(frame: Any) -> None:
        samples.append(
            (time.monotonic(), frame.stream, frame.seq, (time.time_ns() - frame.t_capture) / 1e6)
        )
        c.n += 1
        c.extra = consumer.stats.received if consumer is not None else 0
        _slow_work()

    config = ConsumerConfig(
        name=a["consumer"],
        publish=a["publish"],
        work=a["work"],
        group=a.get("group"),
        results=None,
        streams=(a["pattern"],),
    )
    consumer = Consumer(config, process)
    # SIGTERM stops the consumer (raising Stop in the processor would count as its failure)
    signal.signal(signal.SIGTERM, lambda *_: consumer.stop() if consumer else None)
    consumer.start()
    say_ready()
    consumer.run()
    return {"samples": samples}


def _pattern(label: str, fps: float, size: tuple[int, int]) -> Callable[[], Any]:
    from framebroker.producers.pattern import TestPatternSource

    source = TestPatternSource(size[0], size[1], fps, label=label)
    source.open()
    return source.read


def izmq_sender(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """imagezmq PUB/SUB as its docs use it: the sender binds, JPEG via send_jpg."""
    import cv2
    import imagezmq

    sender = imagezmq.ImageSender(connect_to=a["bind"], REQ_REP=False)
    read = _pattern(a["stream"], a["fps"], (a["width"], a["height"]))
    period = 1.0 / a["fps"]
    say_ready()
    next_at = time.monotonic()
    try:
        while True:
            image = read()
            t_capture = time.time_ns()
            _, jpg = cv2.imencode(".jpg", image, [cv2.IMWRITE_JPEG_QUALITY, a["quality"]])
            sender.send_jpg(f"{a['stream']}|{t_capture}", jpg)
            c.n += 1
            next_at += period
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
            else:
                next_at = time.monotonic()
    except Stop:
        pass
    finally:
        sender.zmq_socket.close(linger=0)
        sender.zmq_context.term()
    return {"sent": c.n}


def izmq_hub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """imagezmq ImageHub (SUB, connects to every sender), 100 ms per frame, in order."""
    import imagezmq

    endpoints: list[str] = a["connect"]
    hub = imagezmq.ImageHub(open_port=endpoints[0], REQ_REP=False)
    for endpoint in endpoints[1:]:
        hub.connect(endpoint)
    samples: list[tuple[float, str, float]] = []
    first: set[str] = set()
    t0: float | None = None
    say_ready()
    try:
        while True:
            msg, _jpg = hub.recv_jpg()
            t_start = time.time_ns()
            stream, t_capture = msg.rsplit("|", 1)
            now = time.monotonic()
            first.add(stream)
            if len(first) >= a["streams"]:
                t0 = now if t0 is None else t0
                samples.append((now - t0, stream, (t_start - int(t_capture)) / 1e6))
                if now - t0 >= a["duration"]:
                    break
            _slow_work()
    except Stop:
        pass
    finally:
        hub.zmq_socket.close(linger=0)
        hub.zmq_context.term()
    return {"samples": samples}


ROLES: dict[str, Role] = {
    f.__name__: f for f in (fresh_consumer, work_consumer, izmq_sender, izmq_hub)
}
