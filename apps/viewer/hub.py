"""FrameHub: the newest frame of each stream, and a way to wait for a newer one.

A task on the event loop takes frames by credit from each broker's work port (a feed,
:class:`~.feed.ViewerFeed`, the default: a slow link never holds a queue of old frames)
or, with ``plain_sub``, drains an asyncio SUB socket as fast as frames come, and keeps one
:class:`LatestFrame` per stream, replacing the previous one. Clients wait with
:meth:`FrameHub.wait_newer` for a frame newer than the one they had; whatever frames came
in the meantime were simply replaced. JPEG streams are passed through as they are; raw
streams are JPEG-encoded once per frame, and only when a client asks for that frame.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import zmq
import zmq.asyncio

from framebroker import codec
from framebroker.endpoints import Connections, EndpointSet, connect_all
from framebroker.errors import CodecError, ProtocolError
from framebroker.link import LinkMonitor
from framebroker.ordering import is_newer
from framebroker.protocol import FrameHeader, FrameMessage, decode_frame, is_system_message
from framebroker.ratelimit import RateLimitedLog
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.transport import make_socket

from .feed import ViewerFeed

log = logging.getLogger("framebroker.viewer")
LINK_POLL_S = 0.5  # how often the connection monitor is read


@dataclass
class LatestFrame:
    """One stream's newest frame as received (``version`` counts frames of the stream)."""

    header: FrameHeader
    payload: bytes
    version: int
    t_received: int  # ns since the epoch
    _jpeg: bytes | None = field(default=None, repr=False)

    def jpeg(self, quality: int = 80) -> bytes:
        """The frame as a JPEG: the payload itself, or raw pixels encoded once (CodecError)."""
        if self._jpeg is None:
            if self.header.encoding == "jpeg":
                self._jpeg = self.payload
            else:
                image = codec.decode(self.header, self.payload)
                if image.dtype != "uint8":  # gray16 / float: scale into 8 bits for display
                    image = image.astype("float32") * (255.0 / max(float(image.max()), 1.0))
                    image = image.astype("uint8")
                if image.ndim == 3 and image.shape[2] == 1:
                    image = image[:, :, 0]
                if image.ndim == 3 and image.shape[2] == 4:
                    image = image[:, :, :3].copy()
                self._jpeg = bytes(codec.encode(image, "jpeg", quality).payload)
        return self._jpeg


SYNC_S = 1.0  # longest wait for a frame before the broker set is looked at again


class FrameHub:
    """Takes frames from the brokers (by credit from ``work``, or with ``work=None`` as a
    plain SUB on ``publish``); keeps the newest frame per stream."""

    def __init__(
        self,
        publish: str,
        subscriptions: Sequence[bytes] = (b"",),
        security: ClientSecurity = PLAINTEXT_CLIENT,
        *,
        work: str | None = None,
        streams: tuple[str, ...] = ("*",),
    ) -> None:
        self.publish = publish
        self.subscriptions = tuple(subscriptions)
        self.security = security
        self.work = work
        self.streams = streams
        self._feed: ViewerFeed | None = None
        self.frames: dict[str, LatestFrame] = {}
        self.received = 0  # frame messages taken off the socket
        self.malformed = 0
        self.received_by_stream: dict[str, int] = {}
        self._waiters: dict[str, list[asyncio.Future[None]]] = {}
        self._ctx: zmq.asyncio.Context | None = None
        self._sock: zmq.asyncio.Socket | None = None
        self._task: asyncio.Task[None] | None = None
        self._endpoints: EndpointSet | None = None
        self._connections: Connections | None = None
        self._link: LinkMonitor | None = None
        self._watch: asyncio.Task[None] | None = None
        self._bad = RateLimitedLog(log, interval=5.0)

    async def start(self) -> None:
        self._ctx = zmq.asyncio.Context()
        if self.work is not None:
            self._feed = ViewerFeed(
                self._ctx, self.work, self.streams, self.security, self._offer_message, self._bad
            )
            self._task = asyncio.create_task(self._feed.run(), name="viewer-feed")
            return
        sock: Any = make_socket(self._ctx, zmq.SUB)
        for prefix in self.subscriptions:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        self.security.secure(sock, "broker")
        self._link = LinkMonitor(sock, self.publish)  # before any connect: no event missed
        self._endpoints, self._connections = connect_all(sock, self.publish)
        self._sock = sock
        self._task = asyncio.create_task(self._receive(), name="viewer-receive")
        self._watch = asyncio.create_task(self._watch_link(self._link), name="viewer-link")

    async def close(self) -> None:
        for task in (self._task, self._watch):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        self._task = self._watch = None
        if self._feed is not None:
            self._feed.close()
            self._feed = None
        if self._link is not None:
            self._link.close()
            self._link = None
        if self._endpoints is not None:
            self._endpoints.close()
            self._endpoints = self._connections = None
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._ctx is not None:
            self._ctx.term()
            self._ctx = None
        for waiters in self._waiters.values():
            for fut in waiters:
                if not fut.done():
                    fut.cancel()

    async def _watch_link(self, link: LinkMonitor) -> None:
        """Log the broker coming and going; retry a handshake it refused (CURVE key
        added to its allow-list later) as producers and consumers do."""
        while True:
            link.poll()
            await asyncio.sleep(LINK_POLL_S)

    async def _receive(self) -> None:
        assert self._sock is not None
        sock = self._sock
        while True:
            if self._connections is not None:
                self._connections.sync()  # a broker set: follow brokers added or removed
            try:
                data = await asyncio.wait_for(sock.recv(), SYNC_S)
            except TimeoutError:
                continue
            if is_system_message(data):  # the broker's own topics: not frames
                continue
            self.received += 1
            try:
                message = decode_frame(data)
            except ProtocolError as exc:
                self.malformed += 1
                self._bad.warning("malformed", "viewer: dropped a malformed frame: %s", exc)
                continue
            self.offer(message.header, bytes(message.payload))

    def _offer_message(self, message: FrameMessage) -> None:
        self.received += 1
        self.offer(message.header, bytes(message.payload))

    def offer(self, header: FrameHeader, payload: bytes) -> None:
        """Make this the stream's newest frame and wake whoever waits for it."""
        stream = header.stream
        previous = self.frames.get(stream)
        if previous is not None and not is_newer(
            header.session, header.seq, previous.header.session, previous.header.seq
        ):
            return  # the broker's last-value cache re-sent a frame we have
        version = previous.version + 1 if previous else 1
        self.frames[stream] = LatestFrame(header, payload, version, time.time_ns())
        self.received_by_stream[stream] = self.received_by_stream.get(stream, 0) + 1
        for fut in self._waiters.pop(stream, ()):
            if not fut.done():
                fut.set_result(None)

    async def wait_newer(self, stream: str, version: int, timeout: float) -> LatestFrame | None:
        """The stream's newest frame if its version is above ``version``, waiting for one
        up to ``timeout`` seconds; None on timeout."""
        frame = self.frames.get(stream)
        if frame is not None and frame.version > version:
            return frame
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.setdefault(stream, []).append(fut)
        try:
            await asyncio.wait_for(fut, timeout)
        except TimeoutError:
            waiters = self._waiters.get(stream, [])
            if fut in waiters:
                waiters.remove(fut)
            return None
        frame = self.frames.get(stream)
        return frame if frame is not None and frame.version > version else None


def jpeg_of(frame: LatestFrame, quality: int) -> bytes | None:
    """``frame.jpeg()``, or None (logged) when its payload cannot be shown."""
    try:
        return frame.jpeg(quality)
    except CodecError as exc:
        log.debug("cannot show frame of %s: %s", frame.header.stream, exc)
        return None
