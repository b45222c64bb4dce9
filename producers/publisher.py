"""Publisher: publish your own numpy images as a stream, no camera or source string needed.

::

    import framebroker

    with framebroker.Publisher("lab/microscope", "broker.lan") as pub:
        while running:
            pub.send(grab_image(), meta={"objective": "40x"})

Each ``send`` stamps the frame with this publisher's session, the next seq and the
capture time, encodes it (JPEG or raw, :mod:`framebroker.codec`) and hands it to a PUB
socket with ZMQ_CONFLATE, exactly as ``framebroker produce`` does: a send never blocks
the caller, and when the link to the broker is slower than you send, only the newest
frame waits to go (older ones are dropped, never queued). Frames sent while the broker is
unreachable are dropped too; :class:`~framebroker.link.LinkMonitor` logs when it comes and goes.

Same-host shared memory (``shm``, as ``produce --shm``): raw frames are also written to a
shared-memory ring (:class:`~.shared_memory.SharedMemoryOutput`, the producer's), and
consumers on this host read them from it with no copy; only a descriptor goes to the
broker for them. With ``auto`` the ring is made at the first raw frame (a replayed raw
recording counts, whatever ``encoding`` says); once made, every frame goes to it. The
publisher has no loop of its own, so while the ring exists a daemon thread stores its
heartbeat every ``HEARTBEAT_S / 2``: a publisher that sends once a minute stays alive to
readers (and to the reaper of a container sharing ``/dev/shm``), and one whose process
is gone is noticed as a producer's is. ``close()`` unlinks the segment, and so does the
collection of a publisher nobody closed, or interpreter exit; after ``kill -9`` the next
writer or a reader on this host reaps it (docs/architecture.md).
"""

from __future__ import annotations

import dataclasses
import logging
import secrets
import threading
import time
import weakref
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from types import MappingProxyType
from typing import Any

import numpy as np
import zmq

from framebroker import codec
from framebroker.config import INGEST_PORT, broker_endpoints, check_endpoints, connect_endpoint
from framebroker.errors import CodecError, ConfigError, ImageError, ProtocolError, TransportError
from framebroker.protocol import (
    ENCODINGS,
    MAX_DIMENSION,
    FrameHeader,
    FrameMessage,
    encode_frame,
    validate_stream_id,
)
from framebroker.recording import TimeSpec, open_stream
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.shm import DEFAULT_SLOTS, HEARTBEAT_S
from framebroker.wire import VERSION

from .config import SHM_MODES, _check_meta, parse_slots
from .owner import OwnerLink
from .replay import original_meta, play
from .shared_memory import SharedMemoryOutput, resolve_mode

log = logging.getLogger("framebroker.producers.publisher")

JPEG_PIXFMTS = ("gray8", "bgr24")
LINK_WAIT_S = 5.0  # replay: wait this long for the broker before playing anyway
SUBSCRIBE_WAIT_S = 0.2  # then this long for the broker's subscription to arrive


@dataclass(frozen=True)
class PublisherConfig:
    """A publisher's settings, validated once (ConfigError); ``produce``'s flags of the
    same names, with the same defaults and rules."""

    stream: str
    ingest: str = connect_endpoint("127.0.0.1", INGEST_PORT)
    encoding: str = "jpeg"
    quality: int = 80
    meta: Mapping[str, str] = field(default_factory=dict)
    shm: str = "auto"
    shm_slots: int = DEFAULT_SLOTS
    security: ClientSecurity = PLAINTEXT_CLIENT

    def __post_init__(self) -> None:
        try:
            validate_stream_id(self.stream)
        except ProtocolError as exc:
            raise ConfigError(f"stream: {exc}") from None
        check_endpoints(self.ingest)
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}: {self.encoding!r}")
        if isinstance(self.quality, bool) or not isinstance(self.quality, int):
            raise ConfigError(f"JPEG quality must be an integer 1..100, got {self.quality!r}")
        if not 1 <= self.quality <= 100:
            raise ConfigError(f"JPEG quality must be 1..100, got {self.quality!r}")
        if self.shm not in SHM_MODES:
            raise ConfigError(f"shm must be one of {', '.join(SHM_MODES)}: {self.shm!r}")
        parse_slots(str(self.shm_slots))
        self.security.require("broker")
        object.__setattr__(self, "meta", MappingProxyType(_check_meta(self.meta)))


def check_image(image: Any, encoding: str) -> str:
    """The pixel format of ``image``; ImageError when no frame of ``encoding`` can carry it."""
    if not isinstance(image, np.ndarray):
        raise ImageError(f"an image is a numpy array, not a {type(image).__name__}")
    if image.ndim not in (2, 3):
        raise ImageError(f"an image is HxW or HxWxC, not of shape {image.shape}")
    if not all(0 < side <= MAX_DIMENSION for side in image.shape):
        raise ImageError(f"image shape {image.shape}: each side must be 1..{MAX_DIMENSION}")
    try:
        pixfmt = codec.pixel_format(image)
    except CodecError as exc:
        raise ImageError(
            f"{exc}; send HxW or HxWx3 (BGR) or HxWx4 (BGRA) uint8, or HxW uint16"
        ) from None
    if encoding == "jpeg" and pixfmt not in JPEG_PIXFMTS:
        raise ImageError(
            f"JPEG carries 8-bit gray or BGR images, not {pixfmt} ({image.dtype}, shape "
            f"{image.shape}): send it with encoding='raw'"
        )
    return pixfmt


class Publisher:
    """Publishes numpy images as the stream ``stream`` to the broker on ``broker``.

    The parameters are ``framebroker produce``'s flags of the same names and defaults:
    ``ingest`` overrides the endpoint (``tcp://HOST:5555``); ``encoding`` "jpeg" or "raw";
    ``quality`` of JPEG, 1..100; ``meta`` sent in every frame header (string values);
    ``shm`` "auto", "on", "off" or "only": also write frames to a shared-memory ring for
    consumers on this host (auto: from the first raw frame, when /dev/shm is usable; only:
    no frame message at all, remote consumers get nothing) and ``shm_slots``, the frames
    it holds (2..64); ``security``: CURVE keys for the broker. Connects on ``start()``,
    ``with`` or the first ``send`` (ShmError there for ``shm`` on/only without a usable
    /dev/shm); ``close()`` (idempotent) gives the last frame 200 ms to leave and unlinks
    the shared-memory segment. While the segment exists, a daemon thread keeps its
    heartbeat (module docstring).
    """

    def __init__(
        self,
        stream: str,
        broker: str = "127.0.0.1",
        *,
        ingest: str | None = None,
        encoding: str = "jpeg",
        quality: int = 80,
        meta: Mapping[str, str] | None = None,
        shm: str = "auto",
        shm_slots: int = DEFAULT_SLOTS,
        security: ClientSecurity | None = None,
    ) -> None:
        self.config = PublisherConfig(
            stream=stream,
            ingest=ingest or broker_endpoints(broker, INGEST_PORT),
            encoding=encoding,
            quality=quality,
            meta=meta or {},
            shm=shm,
            shm_slots=shm_slots,
            security=security or PLAINTEXT_CLIENT,
        )
        self.session = secrets.randbits(63)  # a new session per publisher, as per producer
        self.sent = 0  # frames handed to the socket
        self._seq = 0
        self._lock = threading.Lock()
        self._context: zmq.Context[Any] | None = None
        self._sock: zmq.Socket[Any] | None = None
        self._link: OwnerLink | None = None
        self._shm_mode = "off"  # resolved on start: on or only when this host can write
        self._shm: SharedMemoryOutput | None = None
        self._held = _Held()  # what close(), or the publisher's collection, releases
        self._release: Callable[[], object] = _nothing
        self._closed = False

    @property
    def stream(self) -> str:
        return self.config.stream

    def start(self) -> None:
        """Connect to the broker's ingest endpoint (idempotent)."""
        with self._lock:
            self._start()

    def _start(self) -> zmq.Socket[Any]:
        if self._closed:
            raise TransportError(f"publisher of {self.stream!r} is closed")
        if self._sock is not None:
            return self._sock
        # auto: on for raw frames (the encoding is per frame in a replay); on/only: ShmError
        # at once when this host cannot make segments
        shm_mode = resolve_mode(self.config.shm, "raw")
        context = zmq.Context()
        link = OwnerLink(context, self.stream, self.config.ingest, self.config.security)
        try:
            sock = link.open()
        except BaseException:
            context.term()
            raise
        self._context, self._sock, self._link = context, sock, link
        self._held.link, self._held.context = link, context
        self._release = weakref.finalize(self, self._held.release)
        self._shm_mode = shm_mode
        if self.config.encoding == "raw" or self.config.shm != "auto":
            self._shared_memory("raw")  # now: the descriptor socket joins early
        log.info(
            "publishing stream %r to %s (session %x, shared memory %s)",
            self.stream,
            self.config.ingest,
            self.session,
            shm_mode if self.config.shm != "auto" or shm_mode == "off" else "for raw frames",
        )
        return sock

    @property
    def broker(self) -> str | None:
        """The ingest endpoint frames go to now: the stream's owner in a broker set."""
        with self._lock:
            return None if self._link is None else self._link.endpoint

    @property
    def connected(self) -> bool:
        """Whether the connection to the broker is up (as last reported by libzmq)."""
        with self._lock:
            if self._link is None:
                return False
            self._link.poll()
            return self._link.monitor is not None and self._link.monitor.connected

    def send(
        self,
        image: np.ndarray,
        meta: Mapping[str, str] | None = None,
        *,
        t_capture: int | None = None,
    ) -> int:
        """Publish ``image`` as the next frame; returns its seq. Never blocks.

        ``meta`` adds to (or overrides) the publisher's metadata for this frame.
        ``t_capture``: when the image was captured, ns since the epoch (default: now).
        Raises ImageError (a ValueError) for an image no frame can carry, ConfigError for
        bad metadata, TransportError once closed.
        """
        t_capture = time.time_ns() if t_capture is None else t_capture
        if isinstance(t_capture, bool) or not isinstance(t_capture, int) or t_capture < 0:
            raise ConfigError(f"t_capture is ns since the epoch, an int >= 0: {t_capture!r}")
        pixfmt = check_image(image, self.config.encoding)
        header_meta = self.config.meta
        if meta:
            header_meta = MappingProxyType(_check_meta({**header_meta, **meta}))
        encoded = codec.encode(image, self.config.encoding, self.config.quality)
        with self._lock:
            sock = self._start()
            header = FrameHeader(
                stream=self.stream,
                session=self.session,
                seq=self._seq,
                t_capture=t_capture,
                t_publish=time.time_ns(),
                encoding=self.config.encoding,
                shape=encoded.shape,
                dtype=encoded.dtype,
                pixfmt=pixfmt,
                meta=header_meta,
            )
            return self._publish(sock, header, encoded.payload)

    def send_recorded(self, message: FrameMessage) -> int:
        """Publish a recorded frame as the next frame of this stream; returns its seq.

        The payload goes out as recorded (JPEG never re-encoded); the frame gets this
        publisher's session, the next seq and the capture time now, and keeps the recorded
        seq, session and capture time in ``meta`` (``orig_seq``, ``orig_session``,
        ``orig_t_capture``) next to the recorded meta.
        """
        recorded = message.header
        with self._lock:
            sock = self._start()
            now = time.time_ns()
            header = dataclasses.replace(
                recorded,
                stream=self.stream,
                session=self.session,
                seq=self._seq,
                t_capture=now,
                t_publish=now,
                meta=original_meta(recorded),
                version=VERSION,
            )
            return self._publish(sock, header, message.payload)

    def _publish(
        self, sock: zmq.Socket[Any], header: FrameHeader, payload: bytes | memoryview
    ) -> int:
        """Under the lock: the shared-memory ring (if any) first, then the frame message
        (none with ``shm="only"`` while the ring works), as the producer does."""
        assert self._link is not None
        self._link.poll()
        output = self._shared_memory(header.encoding)
        if output is None or not output.send(header, payload) or not output.only:
            try:
                sock.send(encode_frame(header, payload), copy=False)
            except zmq.ZMQError as exc:
                where = self._link.endpoint or self.config.ingest
                raise TransportError(f"cannot publish to {where}: {exc}") from exc
        self._seq += 1
        self.sent += 1
        return header.seq

    def _shared_memory(self, encoding: str) -> SharedMemoryOutput | None:
        """Under the lock: the ring frames of ``encoding`` go to, made on first need."""
        if self._shm is not None:  # once made, every frame (as produce --shm on)
            return self._shm
        if self._shm_mode == "off" or (self.config.shm == "auto" and encoding != "raw"):
            return None
        assert self._context is not None
        output = SharedMemoryOutput(
            self._context,
            self.config.ingest,
            self.config.security,
            stream=self.stream,
            session=self.session,
            slots=self.config.shm_slots,
            only=self._shm_mode == "only",
        )
        self._held.heartbeat = _Heartbeat(output, self._lock)
        self._shm = output
        return output

    @property
    def shm_segment(self) -> str | None:
        """The shared-memory segment frames are written to now (its name under /dev/shm),
        or None: shared memory is off, not needed yet (no raw frame) or failed."""
        with self._lock:
            output = self._shm
            if output is None or output.failed:
                return None
            return output.writer.name or None

    def replay(
        self,
        recording: str | Path,
        *,
        speed: float = 1.0,
        start: TimeSpec | None = None,
        loop: bool = False,
        stop: threading.Event | None = None,
    ) -> int:
        """Publish a recorded stream with its original timing; blocks, returns frames sent.

        ``recording`` is a stream's folder (``DIR/STREAM``) or a recording of one stream;
        ``speed`` 2.0 plays twice as fast; ``start`` seeks (:func:`~framebroker.recording.
        parse_time`); ``loop`` starts over at the end; setting ``stop`` ends playback.
        Raises RecordingError for a folder that holds no recording. Playback begins once
        the broker is connected (at most ``LINK_WAIT_S``), so the first frames are not
        lost to ZeroMQ's slow joiner (a PUB drops what it sends before it is subscribed).
        """
        stream = open_stream(recording)
        self._wait_for_link(stop or threading.Event())
        return play(
            stream,
            self.send_recorded,
            speed=speed,
            start=start,
            loop=loop,
            stop=stop,
        )

    def _wait_for_link(self, stop: threading.Event) -> None:
        deadline = time.monotonic() + LINK_WAIT_S
        while not self.connected and time.monotonic() < deadline:
            if stop.wait(0.01):
                return
        if not self.connected:
            log.warning(
                "replay of %r starts while %s is unreachable", self.stream, self.config.ingest
            )
            return
        stop.wait(SUBSCRIBE_WAIT_S)

    def close(self) -> None:
        """Disconnect (the newest unsent frame gets the socket's linger); idempotent."""
        with self._lock:
            self._closed = True
            self._link = self._sock = self._context = self._shm = None
        self._release()  # once: here, or when a publisher nobody closed is collected

    def __enter__(self) -> Publisher:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else "open"
        return f"Publisher(stream={self.stream!r}, ingest={self.config.ingest!r}, {state})"


def _nothing() -> None:
    return None


class _Held:
    """A publisher's sockets and ring, released once: by ``close()`` or, for a publisher
    nobody closed, when it is collected or the interpreter exits (weakref.finalize)."""

    def __init__(self) -> None:
        self.link: OwnerLink | None = None
        self.context: zmq.Context[Any] | None = None
        self.heartbeat: _Heartbeat | None = None

    def release(self) -> None:
        heartbeat, link, context = self.heartbeat, self.link, self.context
        self.heartbeat = self.link = self.context = None
        if heartbeat is not None:
            heartbeat.stop()  # the ring: segment unlinked, descriptor socket closed
        if link is not None:
            link.close()  # closes the frame socket
        # (collected on the heartbeat thread itself: its ring socket is still open, and
        # term() would wait for it; the context's own __del__ ends it)
        if context is not None and (heartbeat is None or not heartbeat.current()):
            context.term()


class _Heartbeat:
    """A daemon thread storing a ring's heartbeat while its publisher may be idle.

    Readers in this pid namespace tell a live writer by its pid; those in another one (a
    container sharing /dev/shm) and their reaper by a heartbeat younger than ``STALE_S``.
    The thread holds the ring and the publisher's lock, never the publisher, so a
    publisher nobody closed can still be collected; :meth:`stop` ends the thread, which
    closes the ring (unlinks the segment, closes the descriptor socket) on its way out.
    """

    def __init__(self, output: SharedMemoryOutput, lock: threading.Lock) -> None:
        self._stop = threading.Event()
        self._thread = threading.Thread(
            target=self._run,
            args=(output, lock),
            name=f"framebroker-shm-heartbeat-{output.writer.stream}",
            daemon=True,
        )
        self._thread.start()

    def _run(self, output: SharedMemoryOutput, lock: threading.Lock) -> None:
        try:
            while not self._stop.wait(HEARTBEAT_S / 2):
                with lock:
                    output.tick()
        finally:
            with lock:
                output.close()

    def current(self) -> bool:
        return self._thread is threading.current_thread()

    def stop(self) -> None:
        """End the beat and close the ring (waits for it, unless called on the thread)."""
        self._stop.set()
        if not self.current():
            self._thread.join()
