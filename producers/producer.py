"""The Producer service: grab the newest frame, encode it, publish it to the broker.

Freshness: the publish loop waits for a *new* grabbed frame and sends it at once, so the
capture-to-publish latency is about the encode time, not up to a frame period. With an
``fps`` cap it waits until the cap allows and then takes the newest frame at that moment.
The PUB socket has ZMQ_CONFLATE set: when the connection to the broker is slow, only the
newest message waits to be sent (frame messages are single-part, so conflation keeps them
whole).

::

    producer = Producer(ProducerConfig(source="test:640x480@30", stream="cam1"))
    producer.run()      # until producer.stop() (a signal handler, another thread), the
                        # source's end or config.duration; raises SourceError if it is lost

The lifecycle is :class:`framebroker.service.Service`'s.
"""

from __future__ import annotations

import logging
import secrets
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

import cv2
import numpy as np
import zmq

from framebroker import codec
from framebroker.errors import CodecError, SourceError, TransportError
from framebroker.protocol import FrameHeader, encode_frame
from framebroker.ratelimit import RateLimitedLog
from framebroker.service import Service

from .backoff import Backoff
from .config import ProducerConfig
from .grabber import Grabbed, Grabber, GrabberState
from .owner import OwnerLink
from .shared_memory import SharedMemoryOutput, resolve_mode
from .source import FrameSource
from .spec import make_source

log = logging.getLogger("framebroker.producers.producer")

POLL_S = 0.1  # the loop's wait: close() takes effect within this


@dataclass(frozen=True, slots=True)
class ProducerStats:
    """A snapshot of a producer's counters."""

    session: int
    state: str  # the grabber's state: opening, streaming, retrying, ended, failed, closed
    grabbed: int  # frames the source delivered
    published: int  # frames sent to the broker
    skipped: int  # frames grabbed but superseded by a newer one before publishing
    encode_errors: int
    source_failures: int  # failed opens, lost streams and watchdog trips


class Producer(Service):
    """Publishes one source as one stream; the lifecycle of :class:`Service`.

    ``source`` overrides the source built from ``config.source``: a callable returning a
    new, unopened FrameSource (called again on every reopen).
    """

    thread_name = "framebroker-producer"

    def __init__(
        self,
        config: ProducerConfig,
        *,
        source: Callable[[], FrameSource] | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self._factory = source or self._default_factory
        self._own_context = context is None
        self._context = context
        self._sock: zmq.Socket[Any] | None = None
        self._link: OwnerLink | None = None
        self._shm: SharedMemoryOutput | None = None
        self._grabber: Grabber | None = None
        self._warn = RateLimitedLog(log)
        self.session = 0
        self._seq = 0
        self._published = 0
        self._skipped = 0
        self._encode_errors = 0
        self._next_allowed = 0.0
        self._final: ProducerStats | None = None

    def _default_factory(self) -> FrameSource:
        c = self.config
        return make_source(
            c.source,
            label=c.stream,
            loop=c.loop,
            open_timeout=c.open_timeout,
            read_timeout=c.read_timeout,
        )

    # --- lifecycle -------------------------------------------------------------------

    def _open(self) -> None:
        """Connect to the broker's ingest endpoint and start grabbing."""
        if self._context is None:
            self._context = zmq.Context()
        self._link = OwnerLink(
            self._context, self.config.stream, self.config.ingest, self.config.security
        )
        self._sock = self._link.open()
        self.session = secrets.randbits(63)
        self._shm = self._open_shm(self._context)
        self._grabber = Grabber(
            self._factory,
            open_timeout=self.config.open_timeout,
            read_timeout=self.config.read_timeout,
            backoff=Backoff(
                initial=min(0.5, self.config.max_backoff), maximum=self.config.max_backoff
            ),
        )
        log.info(
            "producing stream %r to %s (session %x)",
            self.config.stream,
            self.config.ingest,
            self.session,
        )
        log.info("security: %s", self.config.security.describe("broker"))
        self._grabber.start()

    def _open_shm(self, context: zmq.Context[Any]) -> SharedMemoryOutput | None:
        """The shared-memory ring for consumers on this host (``--shm``), or None."""
        c = self.config
        mode = resolve_mode(c.shm, c.encoding)
        if mode == "off":
            return None
        return SharedMemoryOutput(
            context,
            c.ingest,
            c.security,
            stream=c.stream,
            session=self.session,
            slots=c.shm_slots,
            only=mode == "only",
        )

    def _serve(self) -> None:
        """Publish until stopped, the source's clean end or ``config.duration``.

        Raises SourceError when the source failed for good (e.g. a missing file).
        """
        grabber = self._grabber
        assert grabber is not None
        self._loop(grabber)
        if grabber.state is GrabberState.FAILED:
            raise SourceError(grabber.error)

    # --- the publish loop ------------------------------------------------------------

    def _loop(self, grabber: Grabber) -> None:
        deadline = None
        if self.config.duration is not None:
            deadline = time.monotonic() + self.config.duration
        last = 0
        while not self.stopping:
            if self._link is not None:
                self._link.poll()
            if self._shm is not None:
                self._shm.tick()
            if deadline is not None and time.monotonic() >= deadline:
                log.info("duration of %gs reached", self.config.duration)
                return
            frame = grabber.wait_newer(last, POLL_S)
            if frame is None:
                if grabber.finished:
                    return
                continue
            frame = self._when_allowed(grabber, frame)
            if frame is None:
                return
            self._skipped += frame.index - last - 1
            last = frame.index
            self._publish(frame)

    def _when_allowed(self, grabber: Grabber, frame: Grabbed) -> Grabbed | None:
        """Wait until the fps cap allows a frame, then the newest; None when closed."""
        if self.config.fps is None:
            return frame
        period = 1.0 / self.config.fps
        now = time.monotonic()
        if now < self._next_allowed:
            if self._stopping.wait(self._next_allowed - now):
                return None
            frame = grabber.latest or frame
            now = time.monotonic()
        self._next_allowed = now + period  # consecutive frames at least 1/fps apart
        return frame

    def _publish(self, frame: Grabbed) -> None:
        image = self._resize(frame.image)
        try:
            encoded = codec.encode(image, self.config.encoding, self.config.quality)
        except CodecError as exc:
            self._encode_errors += 1
            self._warn.warning("encode", "frame not published: %s", exc)
            return
        header = FrameHeader(
            stream=self.config.stream,
            session=self.session,
            seq=self._seq,
            t_capture=frame.t_capture,
            t_publish=time.time_ns(),
            encoding=self.config.encoding,
            shape=encoded.shape,
            dtype=encoded.dtype,
            pixfmt=encoded.pixfmt,
            meta=self.config.meta,
        )
        sock = self._sock
        if sock is None:
            return
        shm = self._shm
        if shm is not None and shm.send(header, encoded.payload) and shm.only:
            self._seq += 1
            self._published += 1
            return
        try:
            sock.send(encode_frame(header, encoded.payload), copy=False)
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot publish to {self._where()}: {exc}") from exc
        self._seq += 1
        self._published += 1

    def _where(self) -> str:
        link = self._link
        return (link.endpoint if link is not None else None) or self.config.ingest

    @property
    def broker(self) -> str | None:
        """The ingest endpoint the stream is published to now (its owner in a set)."""
        link = self._link
        return link.endpoint if link is not None else None

    @property
    def moves(self) -> int:
        """Times the stream moved to another broker of the set."""
        link = self._link
        return link.moves if link is not None else 0

    def _resize(self, image: np.ndarray) -> np.ndarray:
        size = self.config.size
        if size is None or (image.shape[1], image.shape[0]) == size:
            return image
        shrink = size[0] * size[1] < image.shape[0] * image.shape[1]
        interpolation = cv2.INTER_AREA if shrink else cv2.INTER_LINEAR
        return cv2.resize(image, size, interpolation=interpolation)

    def _release(self) -> None:
        grabber, self._grabber = self._grabber, None
        link, self._link = self._link, None
        self._sock = None
        shm, self._shm = self._shm, None
        context = self._context if self._own_context else None
        if self._own_context:
            self._context = None
        if grabber is not None:
            grabber.close()
            self._final = self._snapshot(grabber)
            log.info(
                "stream %r: %d frames published, %d skipped as stale, %d grabbed",
                self.config.stream,
                self._published,
                self._skipped,
                grabber.frames,
            )
        if link is not None:
            link.close()  # closes the socket
        if shm is not None:
            shm.close()
        if context is not None:
            context.term()

    # --- counters --------------------------------------------------------------------

    def stats(self) -> ProducerStats:
        """The counters now (also valid after close)."""
        grabber = self._grabber
        if grabber is not None:
            return self._snapshot(grabber)
        return self._final or ProducerStats(
            self.session, "idle", 0, self._published, self._skipped, self._encode_errors, 0
        )

    def _snapshot(self, grabber: Grabber) -> ProducerStats:
        return ProducerStats(
            session=self.session,
            state=str(grabber.state),
            grabbed=grabber.frames,
            published=self._published,
            skipped=self._skipped,
            encode_errors=self._encode_errors,
            source_failures=grabber.failures,
        )
