"""The producer's side of the same-host path: write each frame to a shared-memory ring and
send its descriptor to the broker.

Why the producer writes (docs/architecture.md, "Same-host shared memory"): the pixels are
born here, so consumers on this host get them with no socket hop at all, one ``memcpy``
per frame whatever their number; the broker's single loop never copies megabytes; and a
segment lives exactly as long as the producer session that names it.

Descriptors go on a socket of their own: the frame socket has ZMQ_CONFLATE, which would
drop a descriptor queued behind its own frame message. This socket keeps up to
``DESCRIPTOR_HWM`` descriptors (a few hundred bytes each) rather than losing them.
"""

from __future__ import annotations

import logging
from typing import Any

import zmq

from framebroker import shm
from framebroker.config import parse_endpoints
from framebroker.errors import ShmError, TransportError
from framebroker.protocol import FrameHeader
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import ClientSecurity
from framebroker.shm_protocol import encode_descriptor
from framebroker.transport import connect, make_socket

log = logging.getLogger("framebroker.producers.shm")

DESCRIPTOR_HWM = 64


def resolve_mode(mode: str, encoding: str) -> str:
    """``auto`` -> ``on`` for raw frames when this host can make segments, else ``off``;
    ``on``/``only`` need a usable /dev/shm (ShmError otherwise)."""
    if mode == "auto":
        return "on" if encoding == "raw" and shm.usable() else "off"
    if mode in ("on", "only") and not shm.usable():
        raise ShmError(f"--shm {mode}: {shm.shm_dir()} is missing or not writable")
    return mode


class SharedMemoryOutput:
    """One session's ring and the socket its descriptors leave on; ``close()`` unlinks."""

    def __init__(
        self,
        context: zmq.Context[Any],
        ingest: str,
        security: ClientSecurity,
        *,
        stream: str,
        session: int,
        slots: int,
        only: bool,
    ) -> None:
        self.only = only  # no frame message: descriptors are all the broker gets
        self.writer = shm.SegmentWriter(stream, session, slots)
        self._sock = make_socket(context, zmq.PUB, sndhwm=DESCRIPTOR_HWM)
        self._warn = RateLimitedLog(log)
        self.failed = False  # a write failed (no room): frames go by the network only
        try:
            security.secure(self._sock, "broker")
            # Every broker of a set: a consumer on this host is connected to all of them and
            # keeps the newest of what it gets twice (session, seq); frames follow the owner.
            for endpoint in parse_endpoints(ingest):
                connect(self._sock, endpoint)
        except BaseException:
            self._sock.close(linger=0)
            raise

    def send(self, header: FrameHeader, payload: bytes | memoryview) -> bool:
        """Write the payload to the ring and send its descriptor; False if shared memory
        failed (logged; from then on the producer sends frame messages only)."""
        if self.failed:
            return False
        try:
            location = self.writer.write(payload, header.seq, header.t_capture)
        except ShmError as exc:
            self.failed = True
            self.writer.close()
            log.warning("shared memory disabled for stream %r: %s", header.stream, exc)
            return False
        try:
            self._sock.send(encode_descriptor(header, location), zmq.NOBLOCK)
        except zmq.Again:
            self._warn.warning("hwm", "descriptor dropped: the broker is not reading")
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot send a descriptor: {exc}") from exc
        return True

    def tick(self) -> None:
        """Keep the heartbeat readers watch (call often while idle)."""
        self.writer.heartbeat()

    def close(self) -> None:
        self.writer.close()
        self._sock.close(linger=200)
