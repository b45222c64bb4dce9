"""Consumer: the service that runs a processor on the newest frame of each stream.

::

    feed (DEALER, by credit) or SUB --(receive thread: decode header)--> LatestSlots
        --(run(): take)--> processor --> ResultMessage --> PUSH or DEALER with
                                                           acknowledgements (NOBLOCK)

By default the receive thread is a *feed* (:mod:`~consumers.feed`, protocol v1.3): it asks
the broker's work port for the newest frames of its streams by credit, so no backlog can
build on a slow path. ``config.plain_sub`` makes it a plain SUB on the publish port.

With ``config.group`` set the consumer is a worker of a work group instead: no SUB and no
receive thread; ``run()`` asks the broker's work port for one frame at a time through a
:class:`~consumers.work_client.WorkClient` and processes what comes.

The lifecycle is :class:`framebroker.service.Service`'s: ``start()`` connects the
sockets, ``run()`` blocks (starting the receive thread) until ``stop()``/``close()`` or
``duration`` passes, and returns within ~100 ms of ``stop()`` (after waiting up to
``ACK_WAIT_S`` for the sink to acknowledge what it holds).
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping
from typing import Any

import zmq

from framebroker.errors import ProcessorError, TransportError
from framebroker.protocol import ResultMessage
from framebroker.ratelimit import RateLimitedLog
from framebroker.service import Service
from framebroker.transport import connect, make_socket

from .config import ConsumerConfig
from .feed import connect_receiver, source_of
from .frame import Frame
from .processors import Processor, processor_name
from .receiver import Receiver
from .results import AckedSender, ResultSender, Sender
from .slots import LatestSlots
from .stats import ConsumerStats
from .work_client import WorkClient

log = logging.getLogger("framebroker.consumer")

TAKE_TIMEOUT = 0.1  # seconds; bounds how long close() and --duration take to act
RESULT_LINGER_MS = 500  # on close, give queued results this long to reach the sink
ACK_WAIT_S = 2.0  # on close, wait this long for the sink to acknowledge spooled results

ResultCallback = Callable[[ResultMessage], None]


class Consumer(Service):
    """Runs ``processor(frame) -> dict | None`` on the newest frame of each stream.

    >>> consumer = Consumer(ConsumerConfig(streams=("cam1",)), lambda f: {"seq": f.seq})
    >>> consumer.run_in_thread()  # doctest: +SKIP
    """

    thread_name = "framebroker-consumer"

    def __init__(
        self,
        config: ConsumerConfig,
        processor: Processor,
        *,
        on_result: ResultCallback | None = None,
        context: zmq.Context[Any] | None = None,
    ) -> None:
        super().__init__()
        self.config = config
        self.processor = processor
        self.on_result = on_result
        self.stats = ConsumerStats(ages_kept=config.ages_kept)
        self._slots = LatestSlots(fps=config.fps)
        self._context = context
        self._owns_context = context is None
        self._frame_sockets: list[zmq.Socket[Any]] = []  # the feed's or SUB's socket
        self._receiver: Receiver | None = None
        self._dealer: zmq.Socket[Any] | None = None
        self._work: WorkClient | None = None
        self._push: zmq.Socket[Any] | None = None
        self._sender: Sender | None = None
        self._bad_input = RateLimitedLog(log, interval=5.0)
        self._errors = RateLimitedLog(log, interval=5.0)

    @property
    def name(self) -> str:
        return self.config.name

    def _open(self) -> None:
        """Create and connect the sockets (no thread is started)."""
        if self._context is None:
            self._context = zmq.Context()
        security = self.config.security
        if self.config.group is None:
            self._receiver = connect_receiver(
                self._make_socket, self.config, self._slots, self.stats, self._bad_input
            )
        else:
            self._dealer = self._make_socket(zmq.DEALER, linger_ms=0)
            security.secure(self._dealer, "broker")
            connect(self._dealer, self.config.work)
            self._work = WorkClient(
                self._dealer,
                group=self.config.group,
                streams=self.config.streams,
                name=self.name,
                stats=self.stats,
                bad_input=self._bad_input,
            )
        if self.config.acked_results is not None:
            self._push = make_socket(
                self._context,
                zmq.DEALER,
                sndhwm=self.config.result_buffer,
                linger_ms=RESULT_LINGER_MS,
            )
            security.secure(self._push, "sink")
            connect(self._push, self.config.acked_results)
            self._sender = AckedSender(
                self._push, self.config.acked_results, self.stats, self.config.result_buffer
            )
        elif self.config.results is not None:
            self._push = make_socket(
                self._context,
                zmq.PUSH,
                sndhwm=self.config.result_buffer,
                linger_ms=RESULT_LINGER_MS,
            )
            security.secure(self._push, "sink")
            connect(self._push, self.config.results)
            self._sender = ResultSender(self._push, self.config.results, self.stats)
        log.info(
            "consumer %s: %s on streams %s from %s, results to %s",
            self.name,
            processor_name(self.processor),
            ",".join(self.config.streams),
            source_of(self.config),
            self.config.acked_results or self.config.results or "nowhere",
        )
        servers = ("broker", "sink") if self._push is not None else ("broker",)
        log.info("consumer %s security: %s", self.name, security.describe(*servers))

    def _serve(self) -> None:
        """Process frames until stopped or ``duration`` passes.

        Raises TransportError if the receive thread fails.
        """
        receiver, thread = self._start_receiver()
        try:
            self._loop(thread)
        finally:
            self._stopping.set()
            self._slots.close()
            if thread is not None:
                thread.join()
            if self._work is not None:
                self._work.leave()
            if self._sender is not None:
                self._sender.flush(ACK_WAIT_S)
            log.info("consumer %s stopped: %s", self.name, self.stats.summary())
        if receiver is not None and receiver.error is not None:
            raise TransportError(f"consumer {self.name}: receiving failed: {receiver.error}")

    def _make_socket(self, kind: int, **options: Any) -> zmq.Socket[Any]:
        assert self._context is not None
        sock = make_socket(self._context, kind, **options)
        self._frame_sockets.append(sock)
        return sock

    def _start_receiver(self) -> tuple[Receiver | None, threading.Thread | None]:
        """The receive thread that fills the slots (none for a worker of a group)."""
        receiver = self._receiver
        if receiver is None:
            return None, None
        thread = threading.Thread(
            target=receiver.run, args=(self._stopping,), name=f"{self.name}-receive", daemon=True
        )
        thread.start()
        return receiver, thread

    def _loop(self, receive_thread: threading.Thread | None) -> None:
        duration = self.config.duration
        deadline = None if duration is None else time.monotonic() + duration
        take = self._slots.take if self._work is None else self._work.take
        while not self.stopping:
            if deadline is not None and time.monotonic() >= deadline:
                break
            if receive_thread is not None and not receive_thread.is_alive():
                break
            frame = take(TAKE_TIMEOUT)
            if frame is not None:
                self.process(frame)
            if self._sender is not None:
                self._sender.pump()

    def process(self, frame: Frame) -> None:
        """Run the processor on one frame and send its result; never raises for bad input."""
        t_start = time.time_ns()
        self.stats.ages_ns.append(t_start - frame.t_capture)
        began = time.perf_counter_ns()
        try:
            result = self.processor(frame)
            if result is not None and not isinstance(result, Mapping):
                raise ProcessorError(f"returned a {type(result).__name__}, not a dict or None")
        except Exception as exc:
            self._processor_failed(frame, exc)
            return
        duration_ns = time.perf_counter_ns() - began
        self.stats.processed += 1
        if result is None:
            return
        message = ResultMessage(
            consumer=self.name,
            stream=frame.stream,
            session=frame.session,
            seq=frame.seq,
            t_capture=frame.t_capture,
            t_start=t_start,
            duration_ns=duration_ns,
            result=result,
        )
        try:
            if self._sender is not None:
                self._sender.send(message)
            if self.on_result is not None:
                self.on_result(message)
        except Exception as exc:
            self._processor_failed(frame, exc)

    def _processor_failed(self, frame: Frame, exc: Exception) -> None:
        self.stats.processor_errors += 1
        self._errors.warning(
            "processor",
            "processor %s failed on stream %s seq %d: %s: %s",
            processor_name(self.processor),
            frame.stream,
            frame.seq,
            type(exc).__name__,
            exc,
        )

    def _wake(self) -> None:
        self._slots.close()  # take() returns at once (the slots' lock is re-entrant)

    def _release(self) -> None:
        """Close sockets (and the context if ours)."""
        for sock in (*self._frame_sockets, self._dealer, self._push):
            if sock is not None:
                sock.close()
        self._frame_sockets.clear()
        self._dealer = self._push = None
        self._receiver = None
        self._work = None
        self._sender = None
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None
