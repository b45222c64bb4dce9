"""The broker's work port: workers of a group ask for frames, the broker hands them out.

A ``ROUTER`` socket (``ROUTER_MANDATORY``, so a worker that went away is noticed at the
first frame sent to it) owned by the broker's loop thread. Requests are decoded by
:mod:`framebroker.work_protocol` and applied to :class:`broker.groups.WorkGroups`; each
decision is sent as ``[routing id, frame]``, the frame being the very ``zmq.Frame`` the
broker cached (zero copy), so a worker's DEALER receives exactly the one-frame frame
message a subscriber gets. A bad request gets an error reply map, is counted and logged
(rate-limited), and changes nothing.
"""

from __future__ import annotations

import contextlib
import logging
from typing import Any

import zmq

from framebroker.control_protocol import encode_error_reply
from framebroker.errors import ProtocolError
from framebroker.ratelimit import RateLimitedLog
from framebroker.work_protocol import decode_work_request

from .groups import GroupInfo, Worker, WorkGroups
from .registry import StreamEntry

log = logging.getLogger("framebroker.broker")

BATCH = 64  # requests handled per poll before other sockets get a turn


class WorkPort:
    """Serves the work socket; ``offer()`` is called for every new frame on the hot path."""

    def __init__(self, groups: WorkGroups, rlog: RateLimitedLog) -> None:
        self.groups = groups
        self._rlog = rlog
        self._sock: zmq.Socket[Any] | None = None
        self.requests = 0
        self.errors = 0  # requests answered with an error (malformed or over a limit)
        self.sent = 0  # frames sent to workers
        self.unreachable = 0  # sends that found the worker gone

    def attach(self, sock: zmq.Socket[Any]) -> None:
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        self._sock = sock

    def serve(self, now: int) -> None:
        """Handle the requests waiting on the socket."""
        sock = self._sock
        assert sock is not None
        for _ in range(BATCH):
            try:
                parts = sock.recv_multipart(zmq.NOBLOCK, copy=True)
            except zmq.Again:
                return
            self.requests += 1
            wid = parts[0]
            try:
                if len(parts) != 2:
                    raise ProtocolError(
                        f"work request must be one frame, got {len(parts) - 1}", kind="invalid"
                    )
                request = decode_work_request(parts[1])
                if request.op == "leave":
                    self.groups.leave(wid)
                    continue
                self._send_all(self.groups.ready(wid, request, now))
            except ProtocolError as exc:
                self._refuse(wid, exc)

    def offer(self, entry: StreamEntry) -> None:
        """A stream's newest frame arrived: hand it to one idle worker per group."""
        self._send_all(self.groups.offer(entry))

    def expire(self, now: int) -> None:
        self.groups.expire(now)

    def snapshot(self, now: int) -> list[GroupInfo]:
        return self.groups.snapshot(now)

    def _send_all(self, sends: list[tuple[Worker, Any]]) -> None:
        while sends:
            worker, entry = sends.pop()
            if self._send(worker, entry):
                continue
            self.unreachable += 1
            sends.extend(self.groups.undeliverable(worker, entry))

    def _send(self, worker: Worker, entry: StreamEntry) -> bool:
        sock = self._sock
        assert sock is not None
        frame = entry.cached
        if frame is None:
            return True  # stale meanwhile: nothing to send, nothing lost
        try:
            sock.send(worker.id, zmq.SNDMORE | zmq.NOBLOCK)
            sock.send(frame, zmq.NOBLOCK, copy=False)
        except zmq.ZMQError as exc:  # EHOSTUNREACH: disconnected; EAGAIN: not reading
            self._rlog.log(logging.INFO, "work-send", "worker %s unreachable: %s", worker.name, exc)
            return False
        self.sent += 1
        return True

    def _refuse(self, wid: bytes, exc: ProtocolError) -> None:
        self.errors += 1
        self._rlog.warning("work-request", "bad work request: %s", exc.reason)
        assert self._sock is not None
        with contextlib.suppress(zmq.ZMQError):  # the worker is gone: nobody to tell
            self._sock.send_multipart([wid, encode_error_reply(exc.reason)], zmq.NOBLOCK)

    def counters(self) -> dict[str, int]:
        return {
            "work_requests": self.requests,
            "work_errors": self.errors,
            "work_sent": self.sent,
            "work_unreachable": self.unreachable,
            "workers_joined": self.groups.joined,
            "workers_left": self.groups.left,
            "groups": len(self.groups),
            "workers": self.groups.worker_count(),
            "feeds": self.groups.feed_count(),
            "feed_sent": self.groups.feed_sent,
            "feed_skipped": self.groups.feed_skipped,
        }
