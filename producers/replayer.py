"""Replayer: ``framebroker produce replay:DIR/STREAM`` as a service.

A :class:`~.publisher.Publisher` playing a recording (:func:`~.replay.play`) under the
service contract: ``run()`` plays until the recording ends (or forever with ``loop``),
``stop()`` ends playback at once.
"""

from __future__ import annotations

import logging
import threading

from framebroker.recording import RecordedStream, open_stream
from framebroker.service import Service

from .config import ProducerConfig
from .publisher import Publisher
from .replay import play
from .spec import parse_source

log = logging.getLogger("framebroker.producers.replay")


class Replayer(Service):
    thread_name = "framebroker-replayer"

    def __init__(self, config: ProducerConfig) -> None:
        super().__init__()
        spec = parse_source(config.source)
        if spec.kind != "replay":
            raise ValueError(f"Replayer plays replay:DIR sources, not {config.source!r}")
        self.config = config
        self.recording: RecordedStream = open_stream(str(spec.target))
        self.publisher = Publisher(
            config.stream,
            ingest=config.ingest,
            meta=config.meta,
            shm=config.shm,  # auto: raw recordings go to shared memory too
            shm_slots=config.shm_slots,
            security=config.security,
        )
        self.sent = 0
        self._stop_event = threading.Event()

    def _open(self) -> None:
        self.publisher.start()
        info = self.recording.info()
        log.info(
            "replaying %r (%d frames, %.1f s) as stream %r at speed %g%s",
            info.stream,
            info.frames,
            (info.end_ns - info.start_ns) / 1e9,
            self.config.stream,
            self.config.speed,
            ", looping" if self.config.loop else "",
        )

    def _serve(self) -> None:
        self.sent = play(
            self.recording,
            self.publisher.send_recorded,
            speed=self.config.speed,
            start=self.config.start,
            loop=self.config.loop,
            stop=self._stop_event,
        )
        log.info("replay of %r done: %d frames sent", self.recording.stream, self.sent)

    def _wake(self) -> None:
        self._stop_event.set()

    def _release(self) -> None:
        self.publisher.close()
