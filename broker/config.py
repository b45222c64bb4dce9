"""The broker's configuration: one frozen value, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from framebroker.config import (
    CONTROL_PORT,
    INGEST_PORT,
    PUBLISH_PORT,
    WORK_PORT,
    bind_endpoint,
    format_bytes,
    parse_bytes,
    parse_endpoint,
    parse_positive,
    parse_seconds,
    work_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.options import option
from framebroker.security import PLAINTEXT_SERVER, ServerSecurity

from .groups import (
    DEFAULT_MAX_FEEDS,
    DEFAULT_MAX_GROUPS,
    DEFAULT_MAX_WORKERS,
    DEFAULT_WORKER_TIMEOUT,
)
from .limits import BrokerLimits

AUTO = "auto"  # work: the control endpoint's port + 2 (5558 -> 5560), see work_endpoint
DEFAULT_MAX_MESSAGE_SIZE = 64 << 20  # 64 MiB: a raw 4K BGR frame is ~25 MB
DEFAULT_STALE_AFTER = 3.0
DEFAULT_FORGET_AFTER = 3600.0
DEFAULT_LOG_STATS = 10.0
# Frames queued per subscriber. The broker forwards in bursts (one frame of every stream
# that sent since the last wake-up), so this must hold a burst: at 100, 500 streams x 15 fps
# lost 39% of frames to one healthy subscriber (python -m benchmarks, scale); at 1000
# (libzmq's and zmq.proxy's default), none. It bounds memory for a subscriber that stops
# reading (1000 x frame size): lower it for raw high-resolution streams.
DEFAULT_PUBLISH_HWM = 1000
# Bytes queued per plain subscriber (broker.publish_bound): when set, the frame bound above is
# lowered once, at bind, so that this many messages of --max-message-size fit. Off (0) by
# default: a bound of 16 frames (1 GiB over 64 MiB) halved the 10 kB throughput and lost
# 6 % of 500 streams for a plain subscriber (benchmarks 2 and 4); libzmq cannot bound a
# queue by size, only by count, and only from bind time (docs/operations.md).
DEFAULT_PUBLISH_QUEUE_BYTES = 0


def parse_work(text: str) -> str:
    """``auto`` or a ZeroMQ endpoint (``--work``)."""
    return text if text == AUTO else parse_endpoint(text)


def _bind(name: str, port: int, what: str) -> str:
    """A bound endpoint field with its flag, ``--<name> ENDPOINT``."""
    return field(
        default=bind_endpoint(port),
        metadata=option(
            f"--{name}",
            type=parse_endpoint,
            metavar="ENDPOINT",
            help=f"{name} endpoint to bind; {what}",
        ),
    )


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker binds and how it judges streams.

    ``stale_after``: seconds without a frame after which a stream is stale (its cached
    frame is dropped and no longer sent to new subscribers). ``forget_after``: seconds
    without a frame after which a stream leaves the registry (0 = never).
    ``log_stats``: seconds between one-line stats logs (0 = off). ``publish_hwm``: frames
    queued per plain subscriber before XPUB drops for that subscriber, lowered at bind so
    that that many messages of ``max_message_size`` fit in ``publish_queue_bytes``
    (broker.publish_bound: a hard bound on what one plain subscriber holds).
    ``poll_ms``: the loop's poll timeout, which bounds how long ``close()`` takes to take
    effect. ``work``: where
    workers of work groups ask for frames ("auto": the control port + 2, so 5560 by
    default and a free port when control binds port 0); ``max_groups``, ``max_workers``
    (per group) and ``max_feeds`` (credit-based fan-out consumers, v1.6) bound them; a
    worker silent for ``worker_timeout`` seconds is dropped.
    ``security``: CURVE keys and allow-list (framebroker.security), plaintext by default.
    ``limits``: how many streams and subscriptions, and how many bytes of cached frames,
    the broker keeps whatever its peers send (:class:`broker.limits.BrokerLimits`).
    """

    ingest: str = _bind("ingest", INGEST_PORT, "producers connect here (SUB)")
    publish: str = _bind("publish", PUBLISH_PORT, "consumers subscribe here (XPUB)")
    control: str = _bind("control", CONTROL_PORT, "`framebroker streams` asks here (ROUTER)")
    work: str = field(
        default=AUTO,
        metadata=option(
            "--work",
            type=parse_work,
            metavar="ENDPOINT",
            help="work endpoint to bind; workers of work groups (`consume --group`) ask here "
            f"(ROUTER); auto: the control port + 2 (tcp://*:{WORK_PORT})",
        ),
    )
    max_message_size: int = field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metadata=option(
            "--max-message-size",
            type=parse_bytes,
            show=format_bytes,
            metavar="BYTES",
            help="largest frame message accepted; libzmq disconnects a producer sending more",
        ),
    )
    stale_after: float = field(
        default=DEFAULT_STALE_AFTER,
        metadata=option(
            "--stale-after",
            type=parse_positive,
            metavar="SECONDS",
            help="seconds without frames after which a stream is stale (its cached frame dropped)",
        ),
    )
    forget_after: float = field(
        default=DEFAULT_FORGET_AFTER,
        metadata=option(
            "--forget-after",
            type=parse_seconds,
            metavar="SECONDS",
            help="seconds without frames after which a stream is forgotten (0 = never)",
        ),
    )
    log_stats: float = field(
        default=DEFAULT_LOG_STATS,
        metadata=option(
            "--log-stats",
            type=parse_seconds,
            metavar="SECONDS",
            help="seconds between one-line stats logs (0 = off)",
        ),
    )
    publish_hwm: int = field(
        default=DEFAULT_PUBLISH_HWM,
        metadata=option(
            "--publish-hwm",
            type=int,
            metavar="FRAMES",
            help="frames queued per plain subscriber before the broker drops frames for it",
        ),
    )
    publish_queue_bytes: int = field(
        default=DEFAULT_PUBLISH_QUEUE_BYTES,
        metadata=option(
            "--publish-queue-bytes",
            type=parse_bytes,
            show=format_bytes,
            metavar="BYTES",
            help="bytes queued per plain subscriber at most: --publish-hwm is lowered to "
            "BYTES / --max-message-size frames (0: frames only)",
        ),
    )
    poll_ms: int = 100
    max_groups: int = field(
        default=DEFAULT_MAX_GROUPS,
        metadata=option(
            "--max-groups",
            type=int,
            metavar="N",
            help="work groups served at once; a worker of one more group is refused",
        ),
    )
    max_workers: int = field(
        default=DEFAULT_MAX_WORKERS,
        metadata=option(
            "--max-workers",
            type=int,
            metavar="N",
            help="workers per work group; one more is refused",
        ),
    )
    max_feeds: int = field(
        default=DEFAULT_MAX_FEEDS,
        metadata=option(
            "--max-feeds",
            type=int,
            metavar="N",
            help="credit-based fan-out consumers (feeds) served at once; one more is refused",
        ),
    )
    worker_timeout: float = field(
        default=DEFAULT_WORKER_TIMEOUT,
        metadata=option(
            "--worker-timeout",
            type=parse_positive,
            metavar="SECONDS",
            help="a worker that sends no request for this long leaves its group",
        ),
    )
    security: ServerSecurity = PLAINTEXT_SERVER  # CURVE on every port, or on none
    limits: BrokerLimits = field(default_factory=BrokerLimits)  # flags: see BrokerLimits

    def __post_init__(self) -> None:
        if self.work == AUTO:
            object.__setattr__(self, "work", work_endpoint(self.control))
        endpoints = (self.ingest, self.publish, self.control, self.work)
        for endpoint in endpoints:
            parse_endpoint(endpoint)
        fixed = [e for e in endpoints if not _any_port(e)]
        if len(set(fixed)) != len(fixed):
            raise ConfigError(
                f"ingest, publish, control and work endpoints must differ: {', '.join(endpoints)}"
            )
        if self.max_message_size < 64:
            raise ConfigError(f"max_message_size must be >= 64 bytes: {self.max_message_size}")
        if not self.stale_after > 0:
            raise ConfigError(f"stale_after must be > 0 seconds: {self.stale_after}")
        if self.forget_after < 0:
            raise ConfigError(f"forget_after must be >= 0 seconds (0 = never): {self.forget_after}")
        if 0 < self.forget_after < self.stale_after:
            raise ConfigError(
                f"forget_after ({self.forget_after:g}s) must not be shorter than "
                f"stale_after ({self.stale_after:g}s)"
            )
        if self.log_stats < 0:
            raise ConfigError(f"log_stats must be >= 0 seconds (0 = off): {self.log_stats}")
        if self.publish_hwm < 1:
            raise ConfigError(f"publish_hwm must be >= 1: {self.publish_hwm}")
        if not 1 <= self.poll_ms <= 1000:
            raise ConfigError(f"poll_ms must be within 1..1000: {self.poll_ms}")
        if self.publish_queue_bytes < 0:
            raise ConfigError(
                f"publish_queue_bytes must be >= 0 (0 = frames only): {self.publish_queue_bytes}"
            )
        for name in ("max_groups", "max_workers", "max_feeds"):
            if getattr(self, name) < 1:
                raise ConfigError(f"{name} must be >= 1: {getattr(self, name)}")
        if not self.worker_timeout >= 1:
            raise ConfigError(
                f"worker_timeout must be >= 1 second (workers ask every second): "
                f"{self.worker_timeout}"
            )


def _any_port(endpoint: str) -> bool:
    """``tcp://host:0`` or ``tcp://host:*``: the system picks a free port at bind time."""
    return endpoint.endswith((":0", ":*"))
