"""The broker-set roles: producers that place their streams, a subscriber of the whole set.

See roles.py for how roles run. ``set_load`` publishes its streams through
:class:`~framebroker.producers.owner.OwnerLink`, the very link ``framebroker produce`` and
``framebroker.Publisher`` use: rendezvous placement, control pings to every broker of the
set, failover and return. It shares one ZeroMQ context between its streams (a real site
runs a process per camera) and raises the context's socket limit accordingly: each stream
has a PUB, a monitor pair and a DEALER per broker. ``set_sub`` is one SUB connected to
every broker of the set, as :func:`framebroker.subscribe` connects; it counts frames and
seq gaps and, when asked, records every frame's arrival for the failover measurement.
"""

from __future__ import annotations

import time
from typing import Any

import zmq

from benchmarks.roles import Counters, Role, Stop, say_ready
from framebroker.protocol import FrameHeader, decode_frame, encode_frame
from framebroker.security import PLAINTEXT_CLIENT


def set_load(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """``streams`` at ``fps`` each, ``size`` bytes, to the broker set ``ingest`` (a list)."""
    from framebroker.producers.owner import OwnerLink

    ctx: zmq.Context[Any] = zmq.Context()
    ctx.setsockopt(zmq.LINGER, 0)
    ctx.set(zmq.MAX_SOCKETS, 16 * len(a["streams"]) + 64)
    names: list[str] = a["streams"]
    links = [OwnerLink(ctx, name, a["ingest"], PLAINTEXT_CLIENT) for name in names]
    socks = [link.open() for link in links]
    payload = bytes(a["size"])
    session = time.time_ns() & (2**62 - 1)
    seqs = [0] * len(names)
    tick = 1.0 / (a["fps"] * len(names))  # sends are spread evenly over the period
    say_ready()
    time.sleep(a.get("settle", 0.5))
    start = time.monotonic()
    j = 0
    try:
        while True:
            i = j % len(names)
            links[i].poll()  # follows the set and the brokers' liveness, moves the stream
            header = FrameHeader(
                stream=names[i],
                session=session,
                seq=seqs[i],
                t_capture=time.time_ns(),
                t_publish=time.time_ns(),
                encoding="raw",
                shape=(1, len(payload)),
                pixfmt="gray8",
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
        moves = sum(link.moves for link in links)
        for link in links:
            link.close()
        ctx.term()
    return {"sent": c.n, "moves": moves}


def set_sub(a: dict[str, Any], c: Counters) -> dict[str, Any]:
    """One SUB connected to every endpoint of ``connect``; counts frames (n) and gaps (extra).

    With ``record``, keeps ``(received ns, captured ns, seq)`` of every frame per stream
    (wall clock: the parent compares them with the moment it killed a broker).
    """
    ctx: zmq.Context[Any] = zmq.Context()
    sock = ctx.socket(zmq.SUB)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SUBSCRIBE, b"")
    for endpoint in a["connect"]:
        sock.connect(endpoint)
    record = bool(a.get("record"))
    seen: dict[str, tuple[int, int]] = {}  # stream -> (session, seq)
    frames: dict[str, list[tuple[int, int, int]]] = {}
    say_ready()
    try:
        while True:
            if not sock.poll(100):
                continue
            while True:
                try:
                    frame = sock.recv(zmq.NOBLOCK, copy=False)
                except zmq.Again:
                    break
                now = time.time_ns()
                h = decode_frame(frame.buffer).header
                _count(c, seen, h)
                if record:
                    frames.setdefault(h.stream, []).append((now, h.t_capture, h.seq))
    except Stop:
        pass
    finally:
        sock.close(linger=0)
        ctx.term()
    return {"received": c.n, "gaps": c.extra, "frames": frames}


def _count(c: Counters, seen: dict[str, tuple[int, int]], h: FrameHeader) -> None:
    before = seen.get(h.stream)
    if before is not None and before[0] == h.session:
        if h.seq <= before[1]:
            return  # a last-value-cache repeat
        c.extra += h.seq - before[1] - 1
    seen[h.stream] = (h.session, h.seq)
    c.n += 1


ROLES: dict[str, Role] = {f.__name__: f for f in (set_load, set_sub)}
