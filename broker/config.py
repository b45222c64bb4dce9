"""The broker's configuration: one frozen value, validated once at construction."""

from __future__ import annotations

from dataclasses import dataclass, field

from broker.limits import DEFAULT_MAX_CONTROL_SIZE, BrokerLimits
from framebroker.config import (
    CONTROL_PORT,
    INGEST_PORT,
    PUBLISH_PORT,
    bind_endpoint,
    parse_endpoint,
)
from framebroker.errors import ConfigError

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
CONTROL_MAX_MESSAGE_SIZE = DEFAULT_MAX_CONTROL_SIZE  # the default of limits.max_control_size


@dataclass(frozen=True)
class BrokerConfig:
    """Where the broker binds and how it judges streams.

    ``stale_after``: seconds without a frame after which a stream is stale (its cached
    frame is dropped and no longer sent to new subscribers). ``forget_after``: seconds
    without a frame after which a stream leaves the registry (0 = never).
    ``log_stats``: seconds between one-line stats logs (0 = off). ``publish_hwm``: frames
    queued per subscriber before XPUB drops for that subscriber. ``poll_ms``: the loop's
    poll timeout, which bounds how long ``close()`` takes to take effect. ``limits``: how
    many streams and subscriptions, and how many bytes of cached frames, the broker keeps
    whatever its peers send (:class:`broker.limits.BrokerLimits`).
    """

    ingest: str = bind_endpoint(INGEST_PORT)
    publish: str = bind_endpoint(PUBLISH_PORT)
    control: str = bind_endpoint(CONTROL_PORT)
    max_message_size: int = DEFAULT_MAX_MESSAGE_SIZE
    stale_after: float = DEFAULT_STALE_AFTER
    forget_after: float = DEFAULT_FORGET_AFTER
    log_stats: float = DEFAULT_LOG_STATS
    publish_hwm: int = DEFAULT_PUBLISH_HWM
    poll_ms: int = 100
    limits: BrokerLimits = field(default_factory=BrokerLimits)

    def __post_init__(self) -> None:
        for name in ("ingest", "publish", "control"):
            parse_endpoint(getattr(self, name))
        fixed = [e for e in (self.ingest, self.publish, self.control) if not _any_port(e)]
        if len(set(fixed)) != len(fixed):
            raise ConfigError(
                f"ingest, publish and control endpoints must differ: "
                f"{self.ingest}, {self.publish}, {self.control}"
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


def _any_port(endpoint: str) -> bool:
    """``tcp://host:0`` or ``tcp://host:*``: the system picks a free port at bind time."""
    return endpoint.endswith((":0", ":*"))
