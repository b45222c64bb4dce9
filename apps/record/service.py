"""The Recorder service: every frame of the matching streams into segment files.

Not a newest-frame consumer: a plain SUB socket on the broker's publish port receives every
frame the link carries (a deep receive queue, ``receive_hwm``, absorbs slow writes), and
each is written as it came (:class:`~.writer.StreamWriter`, one per stream). What is lost
is counted, never hidden: ``missed`` counts the seq gaps per (stream, session) - frames
the broker or the link dropped before they reached the recorder, logged (rate-limited) as
they are found - and ``dropped`` the frames a full disk refused. Retention runs every
``RETENTION_EVERY_S`` and whenever a segment closes. With a trigger, an
:class:`~.trigger.EventGate` decides what is written.

::

    with Recorder(RecordConfig(dir="rec", streams=("cam1",), publish=...)).run_in_thread():
        ...
"""

from __future__ import annotations

import dataclasses
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import zmq

from framebroker import codec
from framebroker.errors import CodecError, ProtocolError
from framebroker.protocol import FrameHeader, decode_frame, encode_frame, is_system_message
from framebroker.ratelimit import RateLimitedLog
from framebroker.recording import stream_folder
from framebroker.segment import OPEN_SUFFIX, recover
from framebroker.service import Service
from framebroker.transport import connect, make_socket

from . import retention
from .config import RecordConfig
from .trigger import EventGate, ResultsFeed
from .writer import StreamWriter, WriterSettings

log = logging.getLogger("framebroker.record")

POLL_MS = 100
RETENTION_EVERY_S = 10.0
TRIGGER_POLL_S = 0.1


@dataclass(frozen=True)
class RecorderStats:
    received: int  # frame messages received
    written: int  # frames stored
    bytes: int  # bytes stored
    missed: int  # frames never received: seq gaps per (stream, session)
    dropped: int  # frames received but not stored (disk full, write errors)
    malformed: int  # messages that were not frames
    events: int  # trigger events opened
    streams: int


class Recorder(Service):
    thread_name = "framebroker-recorder"

    def __init__(self, config: RecordConfig, context: zmq.Context[Any] | None = None) -> None:
        super().__init__()
        self.config = config
        self.root = Path(config.dir)
        self._context = context
        self._own_context = context is None
        self._sock: zmq.Socket[Any] | None = None
        self._writers: dict[str, StreamWriter] = {}
        self._last_seq: dict[str, tuple[int, int]] = {}  # stream -> (session, seq)
        self._received = self._missed = self._malformed = 0
        self._bad = RateLimitedLog(log)
        self._policy = retention.Retention(config.max_age, config.max_bytes)
        self._settings = WriterSettings(
            config.segment_seconds, config.segment_bytes, config.fsync_interval
        )
        condition = config.condition
        self._gate = EventGate(config.pre, config.post) if condition is not None else None
        self._feed = (
            ResultsFeed(Path(config.results_db or ""), condition) if condition is not None else None
        )

    # --- lifecycle -------------------------------------------------------------------

    def _open(self) -> None:
        self.root.mkdir(parents=True, exist_ok=True)
        for leftover in sorted(self.root.rglob("*" + OPEN_SUFFIX)):
            recover(leftover)  # a previous run was killed: seal what it wrote
        retention.enforce(self.root, self._policy)
        if self._context is None:
            self._context = zmq.Context()
        sock = make_socket(self._context, zmq.SUB, rcvhwm=self.config.receive_hwm)
        self._sock = sock
        self.config.security.secure(sock, "broker")
        for prefix in self.config.subscriptions:
            sock.setsockopt(zmq.SUBSCRIBE, prefix)
        connect(sock, self.config.publish)
        log.info(
            "recording %s from %s into %s",
            ",".join(self.config.streams),
            self.config.publish,
            self.root,
        )

    def _serve(self) -> None:
        sock = self._sock
        assert sock is not None
        next_retention = time.monotonic() + RETENTION_EVERY_S
        next_trigger = 0.0
        while not self.stopping:
            if sock.poll(POLL_MS):
                for _ in range(1000):  # drain, but look at the clock now and then
                    try:
                        message = sock.recv(zmq.NOBLOCK, copy=False)
                    except zmq.Again:
                        break
                    self.handle(message.buffer)
            now = time.monotonic()
            if self._feed is not None and now >= next_trigger:
                next_trigger = now + TRIGGER_POLL_S
                self._poll_results(now)
            for writer in self._writers.values():
                writer.tick()
            if now >= next_retention:
                next_retention = now + RETENTION_EVERY_S
                retention.enforce(self.root, self._policy)

    def _release(self) -> None:
        for writer in self._writers.values():
            writer.close_segment()
        if self._feed is not None:
            self._feed.close()
        if self._sock is not None:
            self._sock.close(linger=0)
            self._sock = None
        if self._own_context and self._context is not None:
            self._context.term()
            self._context = None
        s = self.stats()
        log.info(
            "recorded %d frames (%.1f MB) of %d streams; %d missed upstream (seq gaps), "
            "%d dropped on write errors",
            s.written,
            s.bytes / 1e6,
            s.streams,
            s.missed,
            s.dropped,
        )

    # --- frames ----------------------------------------------------------------------

    def handle(self, data: memoryview) -> None:
        """Check, count and store (or buffer) one message from the publish port."""
        if is_system_message(data):
            return
        self._received += 1
        try:
            header = decode_frame(data).header
        except ProtocolError as exc:
            self._malformed += 1
            self._bad.warning(
                "malformed", "dropped malformed message (%d bytes): %s", len(data), exc
            )
            return
        self._count_gap(header)
        message: bytes | memoryview = data
        if header.encoding == "raw" and self.config.raw_as == "jpeg":
            converted = self._to_jpeg(header, data)
            if converted is None:
                return
            message, header = converted
        if self._gate is None:
            self._write(message, header)
            return
        for m, h in self._gate.offer(message, header):
            self._write(m, h)

    def _count_gap(self, header: FrameHeader) -> None:
        last = self._last_seq.get(header.stream)
        self._last_seq[header.stream] = (header.session, header.seq)
        if last is None or last[0] != header.session or header.seq <= last[1] + 1:
            return
        gap = header.seq - last[1] - 1
        self._missed += gap
        self._bad.warning(
            f"gap:{header.stream}",
            "stream %r session %x: %d frame(s) missed before seq %d (not received; "
            "%d missed in all)",
            header.stream,
            header.session,
            gap,
            header.seq,
            self._missed,
        )

    def _to_jpeg(self, header: FrameHeader, data: memoryview) -> tuple[bytes, FrameHeader] | None:
        payload = decode_frame(data).payload
        try:
            image = codec.decode(header, payload)
            encoded = codec.encode(image, "jpeg", self.config.quality)
        except CodecError as exc:
            self._bad.warning("jpeg", "raw frame of %r kept raw: %s", header.stream, exc)
            return bytes(data), header
        jpeg = dataclasses.replace(header, encoding="jpeg", shape=encoded.shape, dtype="uint8")
        return encode_frame(jpeg, encoded.payload), jpeg

    def _write(self, message: bytes | memoryview, header: FrameHeader) -> None:
        writer = self._writers.get(header.stream)
        if writer is None:
            folder = stream_folder(self.root, header.stream)
            writer = self._writers[header.stream] = StreamWriter(
                header.stream, folder, self._settings
            )
        before = len(writer.closed_segments)
        writer.write(message, header)
        if len(writer.closed_segments) != before:
            retention.enforce(self.root, self._policy)

    def _poll_results(self, now: float) -> None:
        assert self._feed is not None and self._gate is not None
        for result in self._feed.poll():
            for m, h in self._gate.trigger(result.stream, now):
                self._write(m, h)
        for stream in self._gate.expire(now):
            writer = self._writers.get(stream)
            if writer is not None:
                writer.close_segment()

    # --- counters --------------------------------------------------------------------

    def stats(self) -> RecorderStats:
        writers = list(self._writers.values())
        return RecorderStats(
            received=self._received,
            written=sum(w.written for w in writers),
            bytes=sum(w.bytes for w in writers),
            missed=self._missed,
            dropped=sum(w.dropped for w in writers),
            malformed=self._malformed,
            events=self._gate.events if self._gate is not None else 0,
            streams=len(writers),
        )
