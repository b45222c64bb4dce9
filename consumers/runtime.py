"""Consumer: the service that runs a processor on the newest frame of each stream.

::

    feed (DEALER per broker, by credit) or SUB --(receive thread: decode header)-->
        LatestSlots --(run(): take)--> processor --> ResultMessage --> PUSH or DEALER
                                                     with acknowledgements (NOBLOCK)

By default the receive thread is a *feed* (:mod:`~consumers.feed`, protocol v1.6): it asks
each broker's work port for the newest frames of its streams by credit, so no backlog can
build on a slow path (frames a producer writes to shared memory on this host are read
there, by descriptor). ``config.plain_sub`` makes it a plain SUB on the publish port.

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

from framebroker.endpoints import Connections, EndpointSet
from framebroker.errors import ProcessorError, TransportError
from framebroker.link import LinkMonitor
from framebroker.protocol import ResultMessage
from framebroker.ratelimit import RateLimitedLog
from framebroker.service import Service
from framebroker.transport import make_socket

from .config import ConsumerConfig
from .feed import connect_receiver, source_of
from .frame import Frame
from .processors import Processor, processor_name
from .receiver import Receiver
from .results import Sender, connect_sender
from .slots import LatestSlots
from .stats import ConsumerStats
from .work_client import WorkClient
from .work_set import WorkSet, work_client

log = logging.getLogger("framebroker.consumer")

TAKE_TIMEOUT = 0.1  # seconds; bounds how long close() and --duration take to act
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
        self._sub: zmq.Socket[Any] | None = None  # the SUB of --plain-sub or shared memory
        self._receiver: Receiver | None = None
        self._dealer: zmq.Socket[Any] | None = None
        self._work: WorkClient | WorkSet | None = None
        self._endpoints: EndpointSet | None = None
        self._connections: Connections | None = None
        self._push: zmq.Socket[Any] | None = None
        self._sender: Sender | None = None
        self._links: list[LinkMonitor] = []  # one per socket: refused handshakes retried
        self._sub_link: LinkMonitor | None = None
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
            self._receiver, self._endpoints = connect_receiver(
                self._frame_socket,
                self._watch,
                self._context,
                self.config,
                self._slots,
                self.stats,
                self._bad_input,
            )
        else:
            self._endpoints, self._work = work_client(
                self._context,
                self.config,
                self.stats,
                self._bad_input,
                self._dealer_socket,
                self._watch,
            )
        results = connect_sender(self._context, self.config, self.stats)
        if results is not None:
            self._push, self._sender, _ = results
            self._watch(results[2])
        log.info(
            "consumer %s: %s on streams %s from %s, results to %s",
            self.name,
            processor_name(self.processor),
            ",".join(self.config.streams),
            source_of(self.config),
            self._results_where(),
        )
        servers = ("broker", "sink") if self._push is not None else ("broker",)
        log.info("consumer %s security: %s", self.name, security.describe(*servers))

    def _frame_socket(self, kind: int, **options: Any) -> zmq.Socket[Any]:
        assert self._context is not None
        self._sub = make_socket(self._context, kind, **options)
        return self._sub

    def _dealer_socket(self, kind: int, **options: Any) -> zmq.Socket[Any]:
        assert self._context is not None
        self._dealer = make_socket(self._context, kind, **options)
        return self._dealer

    def _results_where(self) -> str:
        if self._push is None:
            return "nowhere"
        if self.config.sink is not None and self.config.acked_results is not None:
            return f"the sink set {self.config.sink}"
        return self.config.acked_results or self.config.results or "nowhere"

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
            if frame is not None and not frame.intact:  # its slot was overwritten meanwhile
                self.stats.torn += 1
            elif frame is not None:
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
        if not frame.intact:  # overwritten while the processor read it: drop the result
            self.stats.torn += 1
            return
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

    def _watch(self, link: LinkMonitor) -> LinkMonitor:
        self._links.append(link)
        return link

    def _wake(self) -> None:
        self._slots.close()  # take() returns at once (the slots' lock is re-entrant)

    def _release(self) -> None:
        """Close sockets (their monitors first) and the context if ours."""
        for link in self._links:
            link.close()
        self._links.clear()
        self._sub_link = None
        if isinstance(self._work, WorkSet):
            self._work.close()
        if self._endpoints is not None:
            self._endpoints.close()
        self._endpoints = self._connections = None
        for sock in (self._sub, self._dealer, self._push):
            if sock is not None:
                sock.close()
        self._sub = self._dealer = self._push = None
        self._receiver = None
        self._work = None
        self._sender = None
        if self._owns_context and self._context is not None:
            self._context.term()
            self._context = None
