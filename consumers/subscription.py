"""Subscription: the pull API. Iterate over the newest frames; send results if you like.

::

    import framebroker

    with framebroker.subscribe("site1/", "broker.lan") as frames:
        for frame in frames:  # the newest frame of each stream: never a backlog, never twice
            frames.send_result(frame, {"mean": float(frame.gray.mean())})

It is ``framebroker consume`` turned inside out: your loop takes the frames instead of a
processor being called with them, on the same machinery. Without ``group``, a receive
thread (:class:`~.receiver.Receiver`) fills :class:`~.slots.LatestSlots`,
which keeps only the newest frame per stream and refuses frames already seen: however
slowly you iterate, the next frame is the newest one. The thread is a feed by default
(:class:`~.feed.FeedReceiver`: frames by credit from each broker's work port, so a slow
link never holds a backlog) or, with ``plain_sub``, a SUB on the publish port. With
``group`` the subscription is a worker of that work group (:class:`~.work_client.
WorkClient`): each ``latest()`` asks the broker for one frame, the newest no other worker
of the group has taken, and no thread runs.

Results go to the sink as ``consume`` sends them (:func:`~.results.connect_sender`):
acknowledged by default, kept until the sink has stored them. Use one subscription from
one thread; ``close()`` may come from any thread and ends a waiting loop.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Iterator, Mapping
from typing import Any

import zmq

from framebroker.endpoints import EndpointSet
from framebroker.errors import ConfigError, ProcessorError, TransportError
from framebroker.link import LinkMonitor
from framebroker.protocol import ResultMessage
from framebroker.ratelimit import RateLimitedLog
from framebroker.transport import make_socket

from .config import ConsumerConfig
from .feed import connect_receiver, source_of
from .frame import Frame
from .receiver import Receiver
from .results import AckedSender, Sender, connect_sender
from .slots import LatestSlots
from .stats import ConsumerStats
from .work_client import WorkClient
from .work_set import WorkSet, work_client

log = logging.getLogger("framebroker.consumer")

WAIT_S = 0.1  # longest single wait: bounds how late acknowledgements are read and close acts
ACK_WAIT_S = 2.0  # on close, wait this long for the sink to acknowledge results (as consume)


class Subscription:
    """The newest frames of the streams ``config`` selects, pulled by iteration or
    :meth:`latest`. Made by :func:`framebroker.subscribe` (``.subscribe``), which also
    starts it.

    ``timeout``: iteration ends when no new frame came for that many seconds (None: it
    waits as long as it takes). ``config.duration``: iteration ends that many seconds
    after :meth:`start`. ``stats`` counts what ``consume`` counts (received, skipped,
    duplicates, results sent and acknowledged...); ``processed`` is frames handed out.
    """

    def __init__(self, config: ConsumerConfig, *, timeout: float | None = None) -> None:
        if timeout is not None and not (isinstance(timeout, int | float) and timeout > 0):
            raise ConfigError(f"timeout must be a number of seconds > 0 or None: {timeout!r}")
        self.config = config
        self.timeout = timeout
        self.stats = ConsumerStats(ages_kept=config.ages_kept)
        self._slots = LatestSlots(fps=config.fps)
        self._stop = threading.Event()
        self._lock = threading.RLock()  # the caller's socket use against close()
        self._state = "new"  # -> started -> closed
        self._context: zmq.Context[Any] | None = None
        self._sockets: list[zmq.Socket[Any]] = []
        self._links: list[LinkMonitor] = []  # one per socket: refused handshakes retried
        self._work: WorkClient | WorkSet | None = None
        self._endpoints: EndpointSet | None = None
        self._sender: Sender | None = None
        self._results_sock: zmq.Socket[Any] | None = None
        self._receiver: Receiver | None = None
        self._thread: threading.Thread | None = None
        self._ends_at: float | None = None
        self._bad_input = RateLimitedLog(log, interval=5.0)

    @property
    def name(self) -> str:
        """The consumer name results are stored under."""
        return self.config.name

    @property
    def closed(self) -> bool:
        return self._state == "closed"

    # --- lifecycle -------------------------------------------------------------------

    def start(self) -> None:
        """Connect to the broker (and the sink) and start receiving; once, idempotent."""
        with self._lock:
            if self._state != "new":
                return
            self._state = "started"
            try:
                self._open()
            except BaseException:
                self._teardown()
                raise
            if self.config.duration is not None:
                self._ends_at = time.monotonic() + self.config.duration

    def _open(self) -> None:
        config = self.config
        self._context = context = zmq.Context()
        if config.group is None:
            self._receiver, self._endpoints = connect_receiver(
                self._socket, self._watch, context, config, self._slots, self.stats,
                self._bad_input,
            )  # fmt: skip
        else:
            self._endpoints, self._work = work_client(
                context, config, self.stats, self._bad_input, self._socket, self._watch
            )
        results = connect_sender(context, config, self.stats)
        if results is not None:
            self._results_sock, self._sender, _ = results
            self._sockets.append(self._results_sock)
            self._watch(results[2])
        if self._receiver is not None:
            self._thread = threading.Thread(
                target=self._receiver.run,
                args=(self._stop,),
                name=f"{config.name}-receive",
                daemon=True,
            )
            self._thread.start()
        log.info(
            "subscription %s: streams %s from %s",
            config.name,
            ",".join(config.streams),
            source_of(config),
        )

    def _watch(self, link: LinkMonitor) -> LinkMonitor:
        self._links.append(link)
        return link

    def _socket(self, kind: int, **options: Any) -> zmq.Socket[Any]:
        assert self._context is not None
        sock = make_socket(self._context, kind, **options)
        self._sockets.append(sock)
        return sock

    def close(self) -> None:
        """Stop receiving, give the sink up to 2 s to acknowledge what was sent, disconnect.

        Idempotent, and safe from another thread: a loop waiting for a frame ends.
        """
        self._stop.set()
        self._slots.close()
        with self._lock:
            if self._state == "closed":
                return
            self._state = "closed"
        if self._thread is not None:
            self._thread.join()
        with self._lock:
            if self._work is not None:
                self._work.leave()
            if self._sender is not None:
                self._sender.flush(ACK_WAIT_S)
            self._teardown()
        log.info("subscription %s closed: %s", self.name, self.stats.summary())

    def _teardown(self) -> None:
        """Close the sockets and the context. With the lock held, the receiver stopped."""
        self._state = "closed"
        for link in self._links:  # before their sockets and the context
            link.close()
        self._links.clear()
        if isinstance(self._work, WorkSet):
            self._work.close()
        if self._endpoints is not None:
            self._endpoints.close()
        for sock in self._sockets:
            sock.close()
        self._sockets.clear()
        self._work = self._sender = self._results_sock = None
        if self._context is not None:
            self._context.term()
            self._context = None

    def __enter__(self) -> Subscription:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    # --- frames ----------------------------------------------------------------------

    def latest(self, timeout: float | None = None) -> Frame | None:
        """The newest frame not handed out yet, waiting up to ``timeout`` seconds for one
        (None: until one comes). None on timeout or once closed.

        Streams take turns: of several with a new frame, the one served least recently.
        Raises TransportError if receiving failed.
        """
        self.start()
        deadline = None if timeout is None else time.monotonic() + timeout
        while not self._stop.is_set():
            wait = WAIT_S if deadline is None else min(WAIT_S, deadline - time.monotonic())
            frame = self._take(max(0.0, wait))
            self._pump()
            if frame is not None and not frame.intact:  # its slot was overwritten meanwhile
                self.stats.torn += 1
            elif frame is not None:
                return self._hand_out(frame)
            receiver = self._receiver
            if receiver is not None and receiver.error is not None:
                raise TransportError(
                    f"subscription {self.name}: receiving failed: {receiver.error}"
                )
            if deadline is not None and time.monotonic() >= deadline:
                return None
        return None

    def _take(self, wait: float) -> Frame | None:
        if self._receiver is not None:
            return self._slots.take(wait)
        with self._lock:  # a worker of a group: its socket is used in this thread
            if self._work is None:
                return None
            try:
                return self._work.take(wait)
            except zmq.ZMQError as exc:
                if self._stop.is_set():
                    return None
                raise TransportError(f"subscription {self.name}: {exc}") from exc

    def _hand_out(self, frame: Frame) -> Frame:
        frame.t_start = time.time_ns()
        self.stats.processed += 1
        self.stats.ages_ns.append(frame.t_start - frame.t_capture)
        return frame

    def __iter__(self) -> Iterator[Frame]:
        return self

    def __next__(self) -> Frame:
        self.start()
        wait = self.timeout
        if self._ends_at is not None:
            left = self._ends_at - time.monotonic()
            if left <= 0:
                raise StopIteration
            wait = left if wait is None else min(wait, left)
        frame = self.latest(wait)
        if frame is None:
            raise StopIteration
        return frame

    # --- results ---------------------------------------------------------------------

    def send_result(self, frame: Frame, result: Mapping[str, Any]) -> bool:
        """Send ``result`` (a map of plain values) for ``frame`` to the sink, stored under
        this subscription's name with the frame's stream, session and seq.

        Acknowledged delivery (the default) keeps it until the sink has stored it and
        sends it again if need be; False when a result had to be dropped (the sink has not
        acknowledged ``result_buffer`` results, or cannot keep up). Raises ProcessorError
        for a result that is not made of plain types, ConfigError when the subscription
        was made with ``send_results=False``.
        """
        if not isinstance(result, Mapping):
            raise ProcessorError(
                f"a result is a dict of plain values, not a {type(result).__name__}"
            )
        if not frame.intact:  # a shared-memory frame overwritten while it was used
            self.stats.torn += 1
            return False
        now = time.time_ns()
        t_start = frame.t_start or now
        message = ResultMessage(
            consumer=self.name,
            stream=frame.stream,
            session=frame.session,
            seq=frame.seq,
            t_capture=frame.t_capture,
            t_start=t_start,
            duration_ns=max(0, now - t_start),
            result=result,
        )
        self.start()
        with self._lock:
            if self._sender is None:
                if self._state == "closed":
                    raise TransportError(f"subscription {self.name} is closed")
                raise ConfigError("this subscription sends no results (send_results=False)")
            return self._sender.send(message)

    def _pump(self) -> None:
        """Read the sink's acknowledgements; resend what waited too long."""
        if self._sender is None:
            return
        with self._lock:
            if self._sender is not None:
                self._sender.pump()

    @property
    def pending_results(self) -> int:
        """Results sent but not acknowledged yet (0 without acknowledged delivery)."""
        sender = self._sender
        return sender.pending if isinstance(sender, AckedSender) else 0

    def flush(self, timeout: float = ACK_WAIT_S) -> int:
        """Wait up to ``timeout`` seconds until the sink has acknowledged every result sent.

        Returns how many are still unacknowledged (always 0 for plain PUSH delivery,
        ``acked_results="none"``, which cannot tell).
        """
        deadline = time.monotonic() + timeout
        while True:
            with self._lock:
                sender, sock = self._sender, self._results_sock
                if not isinstance(sender, AckedSender) or sock is None:
                    return 0
                sender.pump()
                left = deadline - time.monotonic()
                if not sender.pending or left <= 0:
                    return sender.pending
                sock.poll(int(min(left, WAIT_S) * 1000) + 1)

    def __repr__(self) -> str:
        streams = ",".join(self.config.streams)
        group = f", group={self.config.group!r}" if self.config.group else ""
        return f"Subscription(streams={streams!r}{group}, name={self.name!r}, {self._state})"
