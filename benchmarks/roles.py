"""The programs a benchmark runs in child processes: ``python -m benchmarks.roles ROLE ARGS``.

``ARGS`` is one JSON object. Every role prints ``READY`` once its sockets are set up and
one JSON line (its result) when it ends: by itself, or on SIGTERM. SIGUSR1 makes a role
note ``(time, counters)`` in its ``marks``, which is how the parent brackets a measuring
window across processes. Message payloads are framebroker frame messages (raw pixels)
everywhere, so our broker, ``zmq.proxy`` and direct PUB->SUB carry the same bytes.

Roles: ``pub`` (send as fast as possible), ``sub`` (count), ``proxy`` (C ``zmq.proxy``
XSUB->XPUB), ``probe``/``probe_sub`` (latency), ``load`` (paced streams, one PUB per
stream like real producers), ``scale_sub`` (several subscribers, counting gaps); the
freshness roles (our consumer, imagezmq) are in :mod:`benchmarks.peers`.
"""

from __future__ import annotations

import json
import os
import signal
import struct
import sys
import time
from collections.abc import Callable
from types import FrameType
from typing import Any

import zmq

from framebroker.protocol import FrameHeader, encode_frame

_STAMP = struct.Struct("<q")  # a send timestamp in the first payload bytes of a probe


class Stop(Exception):
    """Raised by the SIGTERM handler to leave a role's loop, even a blocking call."""


class Counters:
    """What a role counts; SIGUSR1 appends a snapshot to ``marks``."""

    def __init__(self) -> None:
        self.n = 0
        self.extra = 0
        self.marks: list[tuple[float, int, int]] = []

    def install(self) -> None:
        def on_mark(signum: int, frame: FrameType | None) -> None:
            self.marks.append((time.monotonic(), self.n, self.extra))
            print(f"MARKED {len(self.marks)}", flush=True)  # the parent waits for this

        def on_term(signum: int, frame: FrameType | None) -> None:
            raise Stop

        signal.signal(signal.SIGUSR1, on_mark)
        signal.signal(signal.SIGTERM, on_term)


def frame_message(
    stream: str, size: int, seq: int = 0, shape: tuple[int, ...] | None = None
) -> bytes:
    """A valid frame message whose payload is ``size`` raw bytes."""
    header = FrameHeader(
        stream=stream,
        session=1,
        seq=seq,
        t_capture=time.time_ns(),
        t_publish=time.time_ns(),
        encoding="raw",
        shape=shape or (1, size),
        dtype="uint8",
        pixfmt="bgr24" if shape and len(shape) == 3 else "gray8",
    )
    return encode_frame(header, bytes(size))


def _shape(size: int) -> tuple[int, ...] | None:
    return (1080, 1920, 3) if size == 1080 * 1920 * 3 else None


def _socket(ctx: zmq.Context[Any], kind: int, a: dict[str, Any]) -> zmq.Socket[Any]:
    sock = ctx.socket(kind)
    sock.setsockopt(zmq.LINGER, 0)
    if "hwm" in a:
        sock.setsockopt(zmq.SNDHWM if kind in (zmq.PUB, zmq.XPUB) else zmq.RCVHWM, a["hwm"])
    if a.get("conflate"):
        sock.setsockopt(zmq.CONFLATE, 1)
    for endpoint in a.get("bind", []):
        sock.bind(endpoint)
    for endpoint in a.get("connect", []):
        sock.connect(endpoint)
    return sock


def say_ready(info: str = "") -> None:
    print(f"READY {info}".rstrip(), flush=True)


def _report(result: dict[str, Any]) -> None:
    print(json.dumps(result), flush=True)


# --- throughput ----------------------------------------------------------------------------


def pub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Send one stream's frames of ``size`` bytes as fast as the path downstream takes them.

    An XPUB with ``XPUB_NODROP`` is a PUB whose send blocks at the high-water mark instead
    of dropping: the sender is paced by the hop and the subscriber (TCP back-pressure)
    rather than burning a core on frames that would be dropped at once.
    """
    if a.get("nice"):
        os.nice(a["nice"])  # before the context: libzmq's I/O thread inherits it
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.XPUB)
    sock.setsockopt(zmq.XPUB_NODROP, 1)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, a.get("hwm", 1000))
    for endpoint in a.get("bind", []):
        sock.bind(endpoint)
    for endpoint in a.get("connect", []):
        sock.connect(endpoint)
    size = a["size"]
    messages = [frame_message(a.get("stream", "bench"), size, i, _shape(size)) for i in range(8)]
    say_ready()
    send = sock.send
    try:
        while True:
            for m in messages:
                send(m, copy=False)
                c.n += 1
    except Stop:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"sent": c.n}


def sub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Count what arrives (``extra``: bytes)."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    for prefix in a.get("subscribe", [""]):
        sock.setsockopt(zmq.SUBSCRIBE, prefix.encode())
    for endpoint in a.get("bind", []):
        sock.bind(endpoint)
    for endpoint in a.get("connect", []):
        sock.connect(endpoint)
    say_ready()
    recv = sock.recv
    try:
        while True:
            frame = recv(copy=False)
            c.n += 1
            c.extra += len(frame)
    except Stop:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"received": c.n}


def proxy(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """The reference broker hop: libzmq's C proxy, XSUB (ingest) -> XPUB (publish)."""
    ctx: zmq.Context[Any] = zmq.Context()
    xsub = ctx.socket(zmq.XSUB)
    xpub = ctx.socket(zmq.XPUB)
    for sock in (xsub, xpub):
        sock.setsockopt(zmq.LINGER, 0)
    xsub.bind(a["ingest"])
    xpub.bind(a["publish"])
    say_ready()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)  # zmq.proxy never returns: just end
    zmq.proxy(xsub, xpub)
    return {}


# --- latency -------------------------------------------------------------------------------


def probe(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Send ``count`` probes of ``size`` bytes at ``rate``/s, stamped just before sending."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = _socket(ctx, zmq.PUB, a)
    size = a["size"]
    base = frame_message(a["stream"], size, 0, _shape(size))
    offset = len(base) - size  # the payload starts here; the stamp goes there
    buffers = [bytearray(base) for _ in range(4)]
    trackers: list[zmq.MessageTracker | None] = [None] * len(buffers)
    say_ready()
    time.sleep(a.get("settle", 1.0))  # subscriptions reach the PUB (slow joiner)
    period = 1.0 / a["rate"]
    next_at = time.monotonic()
    try:
        for i in range(a["count"]):
            next_at += period
            k = i % len(buffers)
            tracker = trackers[k]
            if tracker is not None:
                tracker.wait(5)  # never touch a buffer libzmq may still be sending
            buf = buffers[k]
            _STAMP.pack_into(buf, offset, time.clock_gettime_ns(time.CLOCK_MONOTONIC))
            trackers[k] = sock.send(buf, copy=False, track=True)
            c.n += 1
            delay = next_at - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except Stop:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"sent": c.n}


def probe_sub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """Receive probes; latency = receive time - the stamp in the payload (same host clock)."""
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, a["stream"].encode() + b"\x00")
    for endpoint in a["connect"]:
        sock.connect(endpoint)
    size = a["size"]
    lat: list[int] = []
    say_ready()
    try:
        while len(lat) < a["count"]:
            frame = sock.recv(copy=False)
            now = time.clock_gettime_ns(time.CLOCK_MONOTONIC)
            buf = frame.buffer
            (sent,) = _STAMP.unpack_from(buf, len(buf) - size)
            lat.append(now - sent)
    except Stop:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"latency_ns": lat}


# --- paced streams (scale, latency under load) ---------------------------------------------


def load(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """``streams`` streams at ``fps`` each, one CONFLATE PUB per stream (as producers do)."""
    ctx: zmq.Context[Any] = zmq.Context()
    names: list[str] = a["streams"]
    per_socket = {"connect": a["connect"], "conflate": a.get("conflate", True)}
    socks = [_socket(ctx, zmq.PUB, per_socket) for _ in names]
    payload = bytes(a["size"])
    encoding, shape, pixfmt = "raw", (1, len(payload)), "gray8"
    if "jpeg_file" in a:  # a real JPEG picture instead of raw bytes (the recording scenario)
        with open(a["jpeg_file"], "rb") as f:
            payload = f.read()
        encoding, shape, pixfmt = "jpeg", tuple(a["shape"]), "bgr24"
    seqs = [0] * len(names)
    tick = 1.0 / (a["fps"] * len(names))  # sends are spread evenly over the period
    say_ready()
    time.sleep(a.get("settle", 0.5))
    start = time.monotonic()
    j = 0
    try:
        while True:
            i = j % len(names)
            header = FrameHeader(
                stream=names[i],
                session=1,
                seq=seqs[i],
                t_capture=time.time_ns(),
                t_publish=time.time_ns(),
                encoding=encoding,
                shape=shape,
                pixfmt=pixfmt,
            )
            socks[i].send(encode_frame(header, payload), copy=False)
            seqs[i] += 1
            c.n += 1
            j += 1
            delay = start + j * tick - time.monotonic()
            if delay > 0:
                time.sleep(delay)
    except Stop:
        pass
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
    return {"sent": c.n}


def scale_sub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """``subscribers`` SUB sockets; counts messages (n) and seq gaps (extra) over all."""
    from framebroker.protocol import decode_frame

    ctx: zmq.Context[Any] = zmq.Context()
    socks = []
    for _ in range(a["subscribers"]):
        sock = ctx.socket(zmq.SUB)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.SUBSCRIBE, b"")
        sock.connect(a["connect"])
        socks.append(sock)
    last: list[dict[str, int]] = [{} for _ in socks]
    poller = zmq.Poller()
    for sock in socks:
        poller.register(sock, zmq.POLLIN)
    index = {sock: i for i, sock in enumerate(socks)}
    say_ready()
    try:
        while True:
            for sock, _ in poller.poll(100):
                seen = last[index[sock]]
                while True:
                    try:
                        frame = sock.recv(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    h = decode_frame(frame.buffer).header
                    before = seen.get(h.stream, -1)
                    if h.seq <= before:
                        continue  # a last-value-cache repeat
                    if before >= 0:
                        c.extra += h.seq - before - 1
                    seen[h.stream] = h.seq
                    c.n += 1
    except Stop:
        pass
    finally:
        for sock in socks:
            sock.close(linger=0)
        ctx.term()
    return {"received": c.n, "gaps": c.extra}


Role = Callable[[dict[str, Any], Counters], dict[str, Any]]
ROLES: dict[str, Role] = {
    f.__name__: f for f in (pub, sub, proxy, probe, probe_sub, load, scale_sub)
}


def main(argv: list[str]) -> int:
    from benchmarks import peers, set_roles  # more roles; they import this module

    roles = {**ROLES, **peers.ROLES, **set_roles.ROLES}
    role, args = argv[0], json.loads(argv[1]) if len(argv) > 1 else {}
    counters = Counters()
    counters.install()
    try:
        result = roles[role](args, counters)
    except Stop:
        result = {}
    result["marks"] = counters.marks
    _report(result)
    return 0


if __name__ == "__main__":
    # Run the imported module's main, not this __main__ copy's: roles in other modules
    # catch benchmarks.roles.Stop, which must be the class the SIGTERM handler raises.
    from benchmarks import roles

    sys.exit(roles.main(sys.argv[1:]))
