"""The broker's part in the same-host shared-memory path: descriptors and network notices.

Producers that write frames to shared memory send a *descriptor* per frame on the system
topic ``$shm/<stream>\\0`` (:mod:`framebroker.shm_protocol`). The broker checks it,
forwards it to the publish port as it came (zero copy) and keeps the newest per stream,
so a new ``$shm/`` subscription gets it at once, as the last value cache does for frames.

A consumer that reads shared memory subscribes to ``$shm/`` topics only; it must still
learn which of its streams have no segment on its host. So the broker sends a *network
notice* on ``$shm/<stream>\\0`` for a stream whose frames come without descriptors: when it
first sees the stream, on a new session, at every full header check (about once a second)
and to a new ``$shm/`` subscription. The consumer then subscribes to the stream's own topic.

No sockets here: the service passes its ``send``.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from typing import Any

from framebroker.errors import ProtocolError
from framebroker.shm_protocol import (
    SHM_TOPIC_PREFIX,
    NetworkNotice,
    decode_descriptor,
    descriptor_topic,
    encode_network_notice,
)

from .registry import StreamEntry

Send = Callable[..., Any]


class _Newest:
    __slots__ = ("message", "seen", "session", "topic")

    def __init__(self, topic: bytes, session: int, message: Any, seen: int) -> None:
        self.topic = topic
        self.session = session
        self.message = message  # the zmq.Frame as received
        self.seen = seen


class ShmNotices:
    """Newest descriptor per stream, and the network notices (cached bytes per stream)."""

    def __init__(self, stale_after: float, max_streams: int) -> None:
        self._stale_ns = int(stale_after * 1e9)
        self._max_streams = max_streams
        self._newest: dict[str, _Newest] = {}
        self._notices: dict[str, bytes] = {}
        self.descriptors = 0  # descriptors forwarded
        self.notices = 0  # network notices sent

    def ingest(self, message: Any, send: Send, now: int) -> None:
        """Check one ``$shm/`` message from a producer, forward and keep it.

        Raises ProtocolError for a malformed one, or a network notice (only the broker
        sends those)."""
        descriptor = decode_descriptor(message.buffer)
        if isinstance(descriptor, NetworkNotice):
            raise ProtocolError("producers send descriptors, not network notices", kind="header")
        stream = descriptor.stream
        entry = self._newest.get(stream)
        if entry is None:
            if len(self._newest) >= self._max_streams:
                raise ProtocolError("too many shared-memory streams", kind="limit")
            topic = descriptor_topic(stream)[len(SHM_TOPIC_PREFIX) :]
            self._newest[stream] = _Newest(topic, descriptor.header.session, message, now)
        else:
            entry.session, entry.message, entry.seen = descriptor.header.session, message, now
        send(message, copy=False)
        self.descriptors += 1

    def has_segment(self, stream: str, session: int, now: int) -> bool:
        """Whether frames of this session of ``stream`` come with fresh descriptors."""
        entry = self._newest.get(stream)
        return entry is not None and entry.session == session and now - entry.seen < self._stale_ns

    def network(self, stream: str, send: Send) -> None:
        """Send the network notice of ``stream``."""
        notice = self._notices.get(stream)
        if notice is None:
            notice = self._notices[stream] = encode_network_notice(stream)
        send(notice)
        self.notices += 1

    def cached(self, prefix: bytes, frames: Iterable[StreamEntry], now: int) -> Iterator[Any]:
        """For a new subscription to ``$shm/`` + ``prefix``: the fresh newest descriptor of
        each matching stream, and a network notice for each matching stream (``frames``:
        the live streams with frames) that has none."""
        described = set()
        for stream, entry in self._newest.items():
            if entry.topic.startswith(prefix) and now - entry.seen < self._stale_ns:
                described.add(stream)
                yield entry.message
        for frame in frames:
            if frame.stream not in described:
                notice = self._notices.get(frame.stream)
                if notice is None:
                    notice = self._notices[frame.stream] = encode_network_notice(frame.stream)
                self.notices += 1
                yield notice

    def expire(self, now: int) -> None:
        """Forget descriptors of streams silent for long (their writer is gone)."""
        for stream in [s for s, e in self._newest.items() if now - e.seen > 10 * self._stale_ns]:
            del self._newest[stream]
        if len(self._notices) > 4 * self._max_streams:
            self._notices.clear()
