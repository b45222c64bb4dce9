"""FrameResolver: turn shared-memory descriptors into Frames, and pick each stream's path.

A consumer that may read shared memory (``--shm on``, the default) subscribes to the
descriptor topics ``$shm/<pattern>`` only. For each ``$shm/`` message the receive thread
hands it here:

- a descriptor whose host id is ours and whose segment we can map: the payload is read
  in place (a view of the slot, no copy) if the slot still holds that frame, and the
  Frame carries a lease so its user can tell whether it was overwritten since;
- a descriptor from another host, a segment we cannot open (permissions, another
  container's /dev/shm), or the broker's network notice: the stream's own topic is
  subscribed, and its frames come over the network as without shared memory.

A stream that turns local again (a producer restarted on this host) is unsubscribed from
its network topic. The patterns' own prefixes are subscribed too until the broker's beacon
comes (within a round trip); a publisher that sends none (a producer's PUB connected to
directly, an older broker) sends no notices either, and its frames keep coming over the
network. Every ``CHECK_S`` the resolver
looks at the writers of the segments it maps: one that is gone (``kill -9``) is unmapped
and its segment reaped.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable

from framebroker import shm
from framebroker.errors import ShmError
from framebroker.protocol import topic_for
from framebroker.ratelimit import RateLimitedLog
from framebroker.shm_protocol import NetworkNotice, ShmLocation, decode_descriptor, is_beacon

from .frame import Frame
from .stats import ConsumerStats

log = logging.getLogger("framebroker.consumer.shm")

CHECK_S = 0.5  # how often the writers of mapped segments are checked
BEACON_WAIT_S = 1.0  # no broker beacon within this: say so in the log
Subscribe = Callable[[bytes], None]


class SlotLease:
    """A frame's claim on a slot: intact while the slot's counter is unchanged."""

    __slots__ = ("location", "reader")

    def __init__(self, reader: shm.SegmentReader, location: ShmLocation) -> None:
        self.reader = reader
        self.location = location

    def intact(self) -> bool:
        return self.reader.intact(self.location)


class FrameResolver:
    """Used by one receive thread; ``subscribe``/``unsubscribe`` act on its SUB socket."""

    def __init__(
        self,
        subscribe: Subscribe,
        unsubscribe: Subscribe,
        stats: ConsumerStats,
        fallback: tuple[bytes, ...] = (),
    ) -> None:
        self._fallback = fallback  # the patterns' own prefixes, until a beacon comes
        self._beacon_seen = False
        self._beacon_due: float | None = time.monotonic() + BEACON_WAIT_S
        self._subscribe = subscribe
        self._unsubscribe = unsubscribe
        self._stats = stats
        self._host = shm.host_id()
        self._readers: dict[str, shm.SegmentReader] = {}  # segment name -> mapping
        self._stream_segment: dict[str, str] = {}  # stream -> the segment it uses now
        self._unreadable: set[str] = set()
        self.network: set[str] = set()  # streams whose frames come over the network
        self._next_check = time.monotonic() + CHECK_S
        self._log = RateLimitedLog(log, interval=5.0)

    def resolve(self, data: memoryview, t_received: int) -> Frame | None:
        """The frame a ``$shm/`` message describes, if it is readable here; else None
        (ProtocolError for a malformed message)."""
        if is_beacon(data):
            if not self._beacon_seen:  # a v1.4 broker: notices will say what to subscribe
                self._beacon_seen = True
                for prefix in self._fallback:
                    self._unsubscribe(prefix)
            return None
        message = decode_descriptor(data)
        if isinstance(message, NetworkNotice):
            self._use_network(message.stream)
            return None
        stream, location = message.stream, message.location
        reader = self._reader(stream, location) if location.host == self._host else None
        if reader is None:
            self._use_network(stream)
            return None
        self._use_local(stream)
        payload = reader.read(location, message.header.seq)
        if payload is None:  # overwritten before we got here: too slow, never torn
            self._stats.torn += 1
            return None
        frame = Frame(message.header, payload, t_received)
        frame.lease = SlotLease(reader, location)
        self._stats.shm_frames += 1
        return frame

    def _reader(self, stream: str, location: ShmLocation) -> shm.SegmentReader | None:
        name = location.segment
        reader = self._readers.get(name)
        if reader is None:
            if name in self._unreadable:
                return None
            try:
                reader = shm.SegmentReader.open(name)
            except ShmError as exc:
                self._unreadable.add(name)
                self._log.warning("open", "stream %s: %s; using the network instead", stream, exc)
                return None
            self._readers[name] = reader
            log.info("stream %s: reading shared memory %s", stream, name)
        previous = self._stream_segment.get(stream)
        if previous != name:
            self._stream_segment[stream] = name
            if previous is not None:
                self._drop(previous)  # a new generation (resolution) or a new session
        return reader

    @property
    def reads_local(self) -> bool:
        """Whether some stream is read from shared memory now."""
        return bool(self._stream_segment)

    def _use_network(self, stream: str) -> None:
        if stream not in self.network:
            self.network.add(stream)
            self._subscribe(topic_for(stream))
            log.info("stream %s: frames over the network", stream)

    def _use_local(self, stream: str) -> None:
        if stream in self.network:
            self.network.discard(stream)
            self._unsubscribe(topic_for(stream))

    def check(self, now: float | None = None) -> None:
        """Every CHECK_S: unmap (and reap) the segments whose writer is gone."""
        now = time.monotonic() if now is None else now
        if self._beacon_due is not None and now >= self._beacon_due:
            self._beacon_due = None
            if not self._beacon_seen:
                log.info("no beacon from the publisher: frames over the network only")
        if now < self._next_check:
            return
        self._next_check = now + CHECK_S
        gone = [name for name, reader in self._readers.items() if not reader.writer_alive()]
        for name in gone:
            streams = [s for s, n in self._stream_segment.items() if n == name]
            log.warning("stream %s: the writer of %s is gone", ",".join(streams), name)
            for stream in streams:
                del self._stream_segment[stream]
            self._drop(name)
        if gone:
            shm.reap()

    def _drop(self, name: str) -> None:
        reader = self._readers.pop(name, None)
        if reader is not None:
            reader.close()

    def close(self) -> None:
        for name in list(self._readers):
            self._drop(name)
