"""Work groups: who gets the newest frame of a stream when workers share it.

Pure bookkeeping, like :mod:`broker.registry` (no sockets): the broker's work port
(:mod:`broker.work_port`) feeds it the workers' requests and every new frame, and sends
what it decides. The rules (docs/protocol.md, "Work groups"):

- A worker joins a named group with stream patterns and asks for frames by *credit*
  (how many it can take now). Each frame of a stream goes to at most one worker of each
  group whose patterns match it, and only to a worker with credit left.
- When a frame arrives and a matching worker of the group has credit, it gets the frame
  at once (the worker idle longest first). Otherwise the stream *waits* in the group: its
  newest frame is unclaimed. A later frame of that stream replaces the unclaimed one
  (counted as ``skipped``): frames are never queued.
- When a worker asks, it gets the newest frame of the stream that has waited longest
  among those it matches, if any; else it stays idle until a frame arrives.
- Credit is absolute: a request says "I can take ``credit`` more frames, having received
  ``received``". Frames sent but not yet received when the request was written are in
  flight and count against it, so a repeated request (a heartbeat) grants nothing twice.

A *feed* (protocol v1.6, op ``feed``) is a fan-out consumer served by the same rules: a
private group of one worker, which nobody else can join. So it gets the newest frame of
every stream it matches, one per credit, the stream that has waited longest first (a
replaced waiting frame keeps its stream's place), and nothing is ever queued for it. A
new feed starts with the newest cached frame of each matching live stream waiting (the
last value cache of the publish port), so it need not wait a frame period.

Memory is bounded: at most ``max_groups`` groups of ``max_workers`` workers and
``max_feeds`` feeds, and per group or feed at most one waiting entry per known stream (a
reference to the registry's cached frame, not a copy). A worker or feed silent for
``worker_timeout`` seconds is dropped; so is one the work port cannot reach.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Any

from framebroker.errors import ProtocolError
from framebroker.work_protocol import WorkRequest

from .registry import StreamEntry

log = logging.getLogger("framebroker.broker")

_NS = 1_000_000_000
DEFAULT_MAX_GROUPS = 64
DEFAULT_MAX_WORKERS = 256  # per group
DEFAULT_WORKER_TIMEOUT = 5.0  # seconds without a request; idle workers ask every second
_MAX_TOPIC_CACHE = 1 << 16  # topics whose groups are cached between membership changes
DEFAULT_MAX_FEEDS = 1024  # credit-based fan-out consumers (protocol v1.6)

# The newest cached frames of the live streams a set of topic prefixes selects.
NewestFrames = Callable[[tuple[bytes, ...]], Iterable[StreamEntry]]


class Worker:
    """One worker connection (a routing id on the work port)."""

    __slots__ = (
        "_match",
        "base",
        "credit",
        "group",
        "id",
        "joined",
        "last_seen",
        "name",
        "prefixes",
        "received",
        "sent",
    )

    def __init__(self, wid: bytes, group: Group, request: WorkRequest, now: int) -> None:
        self.id = wid
        self.group = group
        self.name = request.name or wid.hex()
        self.prefixes = request.prefixes()
        self.base = request.received  # frames it had before this broker knew it
        self.received = request.received
        self.credit = 0
        self.sent = 0
        self.joined = now
        self.last_seen = now
        self._match: dict[bytes, bool] = {}

    def matches(self, topic: bytes) -> bool:
        """Whether the worker's patterns select the stream with this topic (cached)."""
        hit = self._match.get(topic)
        if hit is None:
            hit = self._match[topic] = any(topic.startswith(p) for p in self.prefixes)
        return hit

    def in_flight(self) -> int:
        return max(0, self.sent - (self.received - self.base))

    def available(self) -> int:
        return self.credit - self.in_flight()


class Group:
    """The workers of one group and the streams whose newest frame nobody has taken."""

    def __init__(self, name: str, *, feed: bool = False) -> None:
        self.name = name
        self.feed = feed  # a private group of one: a fan-out consumer served by credit
        self.workers: dict[bytes, Worker] = {}
        self.idle: dict[bytes, Worker] = {}  # workers with credit left, idle longest first
        self.waiting: dict[bytes, StreamEntry] = {}  # topic -> entry, waiting longest first
        self.dispatched = 0  # frames handed to a worker
        self.skipped = 0  # unclaimed frames replaced by a newer one of their stream
        self._match: dict[bytes, bool] = {}

    def matches(self, topic: bytes) -> bool:
        """Whether any worker of the group wants the stream (cached until workers change)."""
        hit = self._match.get(topic)
        if hit is None:
            hit = self._match[topic] = any(w.matches(topic) for w in self.workers.values())
        return hit

    def forget_matches(self) -> None:
        self._match.clear()


@dataclass(frozen=True)
class WorkerInfo:
    name: str
    credit: int
    in_flight: int
    sent: int
    age_s: float  # since its last request

    def to_map(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "credit": self.credit,
            "in_flight": self.in_flight,
            "sent": self.sent,
            "age_s": self.age_s,
        }


@dataclass(frozen=True)
class GroupInfo:
    """One group as reported on the control port (``groups`` op)."""

    group: str
    workers: tuple[WorkerInfo, ...]
    dispatched: int
    skipped: int
    waiting: int  # streams whose newest frame is unclaimed right now

    def to_map(self) -> dict[str, Any]:
        return {
            "group": self.group,
            "workers": [w.to_map() for w in self.workers],
            "dispatched": self.dispatched,
            "skipped": self.skipped,
            "waiting": self.waiting,
        }


class WorkGroups:
    """Every group the broker serves; owned by the broker's loop thread."""

    def __init__(
        self,
        *,
        max_groups: int = DEFAULT_MAX_GROUPS,
        max_workers: int = DEFAULT_MAX_WORKERS,
        worker_timeout: float = DEFAULT_WORKER_TIMEOUT,
        max_feeds: int = DEFAULT_MAX_FEEDS,
        newest: NewestFrames | None = None,
    ) -> None:
        self.max_groups = max_groups
        self.max_workers = max_workers
        self.max_feeds = max_feeds
        self._newest = newest
        self._timeout_ns = int(worker_timeout * _NS)
        self._groups: dict[str, Group] = {}
        self._feeds: dict[bytes, Group] = {}  # routing id -> its private group
        self._by_topic: dict[bytes, tuple[Group, ...]] = {}  # who wants a stream (cache)
        self._workers: dict[bytes, Worker] = {}
        self.joined = 0  # workers that joined (a reconnecting worker joins again)
        self.left = 0  # by request, timeout or disconnect
        self.feed_sent = 0  # frames handed to feeds
        self.feed_skipped = 0  # frames a feed had no credit for, replaced by a newer one

    def __bool__(self) -> bool:
        """True while any worker is present: the hot path skips everything otherwise."""
        return bool(self._workers)

    def __len__(self) -> int:
        return len(self._groups)

    # --- requests --------------------------------------------------------------------

    def ready(self, wid: bytes, request: WorkRequest, now: int) -> list[tuple[Worker, Any]]:
        """A worker asked for frames: (worker, frame) pairs to send now.

        Raises ProtocolError (kind ``limit``) when the request would exceed a bound.
        """
        worker = self._workers.get(wid)
        if worker is not None and (
            worker.group.feed != request.is_feed
            or (not request.is_feed and worker.group.name != request.group)
            or worker.prefixes != request.prefixes()
        ):
            self.remove(wid, "changed its group or streams")
            worker = None
        if worker is None:
            worker = self._join(wid, request, now)
        worker.credit = request.credit
        worker.received = max(request.received, worker.base)
        worker.last_seen = now
        return self._serve(worker)

    def _join(self, wid: bytes, request: WorkRequest, now: int) -> Worker:
        if request.is_feed:
            return self._join_feed(wid, request, now)
        group = self._groups.get(request.group)
        if group is None:
            if len(self._groups) >= self.max_groups:
                raise ProtocolError(
                    f"the broker serves at most {self.max_groups} groups", kind="limit"
                )
            group = self._groups[request.group] = Group(request.group)
        if len(group.workers) >= self.max_workers:
            raise ProtocolError(
                f"group {group.name!r} is full ({self.max_workers} workers)", kind="limit"
            )
        worker = Worker(wid, group, request, now)
        group.workers[wid] = self._workers[wid] = worker
        group.forget_matches()
        self._by_topic.clear()
        self.joined += 1
        log.info(
            "worker %s joined group %s (%d workers)", worker.name, group.name, len(group.workers)
        )
        return worker

    def _join_feed(self, wid: bytes, request: WorkRequest, now: int) -> Worker:
        """A new feed: a private group whose waiting streams start as the cached newest."""
        if len(self._feeds) >= self.max_feeds:
            raise ProtocolError(f"the broker serves at most {self.max_feeds} feeds", kind="limit")
        group = self._feeds[wid] = Group(f"feed {request.name or wid.hex()}", feed=True)
        worker = Worker(wid, group, request, now)
        group.workers[wid] = self._workers[wid] = worker
        if self._newest is not None:
            group.waiting = {e.topic: e for e in self._newest(worker.prefixes)}
        self._by_topic.clear()
        self.joined += 1
        log.info("feed %s joined (%d feeds)", worker.name, len(self._feeds))
        return worker

    def _serve(self, worker: Worker) -> list[tuple[Worker, Any]]:
        """Hand ``worker`` the newest unclaimed frames it matches, while it has credit."""
        group = worker.group
        out: list[tuple[Worker, Any]] = []
        if group.waiting and worker.available() > 0:
            for topic in list(group.waiting):
                entry = group.waiting[topic]
                if entry.cached is None:  # the stream went stale meanwhile
                    del group.waiting[topic]
                    continue
                if not worker.matches(topic):
                    continue
                del group.waiting[topic]
                out.append((worker, self._hand(worker, entry)))
                if worker.available() <= 0:
                    break
        self._update_idle(worker)
        return out

    def leave(self, wid: bytes) -> None:
        self.remove(wid, "left")

    def remove(self, wid: bytes, why: str) -> Worker | None:
        """Forget a worker; its group goes when its last worker does."""
        worker = self._workers.pop(wid, None)
        if worker is None:
            return None
        group = worker.group
        group.workers.pop(wid, None)
        group.idle.pop(wid, None)
        group.forget_matches()
        self._by_topic.clear()
        self.left += 1
        if group.feed:
            del self._feeds[wid]
            log.info("feed %s %s (%d feeds left)", worker.name, why, len(self._feeds))
            return worker
        log.info(
            "worker %s %s group %s (%d workers left)",
            worker.name,
            why,
            group.name,
            len(group.workers),
        )
        if not group.workers:
            del self._groups[group.name]
        return worker

    # --- frames ----------------------------------------------------------------------

    def offer(self, entry: StreamEntry) -> list[tuple[Worker, Any]]:
        """A new frame is the stream's newest: at most one worker per group gets it."""
        topic = entry.topic
        out: list[tuple[Worker, Any]] = []
        groups = self._by_topic.get(topic)
        if groups is None:
            if len(self._by_topic) > _MAX_TOPIC_CACHE:
                self._by_topic.clear()
            every = [*self._groups.values(), *self._feeds.values()]
            groups = self._by_topic[topic] = tuple(g for g in every if g.matches(topic))
        for group in groups:
            worker = next((w for w in group.idle.values() if w.matches(topic)), None)
            if worker is not None:
                group.waiting.pop(topic, None)
                out.append((worker, self._hand(worker, entry)))
                self._update_idle(worker)
            elif topic in group.waiting:
                group.skipped += 1  # the frame waiting there will never be handed out
                self.feed_skipped += group.feed
                group.waiting[topic] = entry
            else:
                group.waiting[topic] = entry
        return out

    def undeliverable(self, worker: Worker, entry: StreamEntry) -> list[tuple[Worker, Any]]:
        """``worker`` could not be reached: drop it and offer its frame to its group only."""
        group = worker.group
        self.remove(worker.id, "is unreachable; removed from")
        self.feed_sent -= group.feed  # it never left
        if group.feed or group.name not in self._groups:
            return []
        group.dispatched -= 1
        replacement = next((w for w in group.idle.values() if w.matches(entry.topic)), None)
        if replacement is None:
            group.waiting[entry.topic] = entry
            return []
        out = [(replacement, self._hand(replacement, entry))]
        self._update_idle(replacement)
        return out

    def _hand(self, worker: Worker, entry: StreamEntry) -> Any:
        worker.sent += 1
        worker.group.dispatched += 1
        self.feed_sent += worker.group.feed
        return entry

    @staticmethod
    def _update_idle(worker: Worker) -> None:
        idle = worker.group.idle
        if worker.available() > 0:
            idle.setdefault(worker.id, worker)  # keeps its place if it was idle already
        else:
            idle.pop(worker.id, None)

    # --- housekeeping ----------------------------------------------------------------

    def expire(self, now: int) -> None:
        """Drop workers that sent nothing for ``worker_timeout`` (dead or cut off)."""
        for worker in [w for w in self._workers.values() if now - w.last_seen > self._timeout_ns]:
            self.remove(worker.id, f"timed out ({self._timeout_ns / _NS:g}s silent); left")

    def worker_count(self) -> int:
        """Workers of named groups (feeds not included)."""
        return len(self._workers) - len(self._feeds)

    def feed_count(self) -> int:
        return len(self._feeds)

    def snapshot(self, now: int) -> list[GroupInfo]:
        """Every group, sorted by name. Safe to call from another thread (CPython)."""
        return [
            GroupInfo(
                group=g.name,
                workers=tuple(
                    WorkerInfo(
                        name=w.name,
                        credit=w.credit,
                        in_flight=w.in_flight(),
                        sent=w.sent,
                        age_s=round((now - w.last_seen) / _NS, 3),
                    )
                    for w in sorted(list(g.workers.values()), key=lambda w: w.name)
                ),
                dispatched=g.dispatched,
                skipped=g.skipped,
                waiting=len(g.waiting),
            )
            for g in sorted(list(self._groups.values()), key=lambda g: g.name)
        ]
