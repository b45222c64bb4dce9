"""WorkClient: the worker's side of a work group (protocol v1.2), on a DEALER socket.

Instead of subscribing to every frame, a worker asks the broker for one frame when it is
idle and gets the newest frame nobody else in its group has taken::

    take(): send "ready" (credit 1, frames received so far) --> broker work port
            <-- one frame message (the newest unclaimed frame of a stream it matches)
    process it, then take() again: the next request goes out at once

While nothing arrives the request is repeated every ``HEARTBEAT_S`` (it grants nothing
twice: the broker counts frames in flight against the credit), which also tells the
broker the worker is alive and re-joins it after a broker restart. Because frames are
only sent on request, at most one frame is ever on its way to the worker: a slow network
link never builds a backlog. Runs in the consumer's processing thread (no thread of its
own); it owns no socket.
"""

from __future__ import annotations

import contextlib
import logging
import time
from typing import Any

import zmq

from framebroker.control_protocol import refusal_reason
from framebroker.errors import ProtocolError
from framebroker.link import LinkMonitor
from framebroker.protocol import decode_frame
from framebroker.ratelimit import RateLimitedLog
from framebroker.work_protocol import WorkRequest, encode_work_request, is_reply

from .frame import Frame
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer")

HEARTBEAT_S = 1.0  # an idle worker repeats its request this often
CREDIT = 1  # frames asked for at a time: one, so the frame started on is the newest


class WorkClient:
    """Asks for frames of ``streams`` as a worker of ``group`` named ``name``."""

    def __init__(
        self,
        sock: zmq.Socket[Any],
        *,
        group: str,
        streams: tuple[str, ...],
        name: str,
        stats: ConsumerStats,
        bad_input: RateLimitedLog,
        link: LinkMonitor | None = None,
    ) -> None:
        self._sock = sock
        self._link = link  # polled before each request: a refused handshake is retried
        self._stats = stats
        self._bad_input = bad_input
        self._group = group
        self._streams = streams
        self._name = name
        self.received = 0  # frames received from the broker on this socket
        self._asked_at: float | None = None  # None: ask at the next take()

    def take(self, timeout: float) -> Frame | None:
        """Ask if due, then wait up to ``timeout`` seconds for a frame; None if none came."""
        self.ask_if_due(time.monotonic())
        if not self._sock.poll(int(timeout * 1000)):
            return None
        return self.receive()

    def ask_if_due(self, now: float, credit: int = CREDIT) -> None:
        """Send the request (``credit`` frames) if none went out in the last HEARTBEAT_S."""
        if self._asked_at is None or now - self._asked_at >= HEARTBEAT_S:
            if self._link is not None:
                self._link.poll()  # idle moments only: a refused handshake is retried
            self._ask(now, credit)

    def revoke(self) -> None:
        """Withdraw the credit (a request with credit 0); the next ask grants it again."""
        self._ask(time.monotonic(), 0)
        self._asked_at = None

    def receive(self) -> Frame | None:
        """The message waiting on the socket as a frame (None: a reply, or malformed)."""
        message = self._sock.recv(zmq.NOBLOCK, copy=False)
        data = message.buffer
        if is_reply(data):
            self._refused(data)
            return None
        self.received += 1
        self._stats.received += 1
        self._asked_at = None  # the frame used up the credit: ask again when idle
        try:
            decoded = decode_frame(data)
        except ProtocolError as exc:
            self._stats.malformed += 1
            self._bad_input.warning(
                "malformed", "dropped malformed message (%d bytes): %s", len(data), exc
            )
            return None
        return Frame.from_message(decoded, time.time_ns())

    def leave(self) -> None:
        """Tell the broker this worker is gone (best effort, never blocks)."""
        with contextlib.suppress(zmq.ZMQError):
            self._sock.send(encode_work_request(WorkRequest(op="leave")), zmq.NOBLOCK)

    def _ask(self, now: float, credit: int = CREDIT) -> None:
        request = WorkRequest(
            op="ready",
            group=self._group,
            streams=self._streams,
            credit=credit,
            received=self.received,
            name=self._name,
        )
        with contextlib.suppress(zmq.Again):  # not connected yet: the next heartbeat
            self._sock.send(encode_work_request(request), zmq.NOBLOCK)
        self._asked_at = now

    def _refused(self, data: memoryview) -> None:
        self._bad_input.warning(
            "refused",
            "the broker refused worker %s in group %s: %s",
            self._name,
            self._group,
            refusal_reason(data),
        )
