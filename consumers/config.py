"""ConsumerConfig: what a consumer connects to, which streams it takes, how fast."""

from __future__ import annotations

import os
import socket
from collections.abc import Iterable
from dataclasses import dataclass, field

from framebroker.config import (
    PUBLISH_PORT,
    RESULTS_PORT,
    WORK_PORT,
    connect_endpoint,
    parse_endpoint,
)
from framebroker.errors import ConfigError, ProtocolError
from framebroker.protocol import subscription_for
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.work_protocol import MAX_GROUP_PATTERNS, validate_group

DEFAULT_RESULT_BUFFER = 1000  # results queued for a slow or absent sink before dropping
DEFAULT_AGES_KEPT = 1000  # recent frame ages kept for stats


def default_name() -> str:
    """``<hostname>-<pid>``: unique enough to tell consumers apart in the sink."""
    return f"{socket.gethostname()}-{os.getpid()}"


def parse_patterns(values: str | Iterable[str]) -> tuple[str, ...]:
    """``"cam1,site1/"`` or ``["cam1", "site1/*,cam2"]`` -> ("cam1", "site1/", "cam2").

    Empty items are dropped; duplicates are kept once, in order.
    """
    items = [values] if isinstance(values, str) else list(values)
    out: list[str] = []
    for item in items:
        for part in item.split(","):
            part = part.strip()
            if part and part not in out:
                out.append(part)
    return tuple(out)


@dataclass(frozen=True)
class ConsumerConfig:
    """A consumer's settings, validated once at construction (raises ConfigError).

    ``results=None`` means results are not sent anywhere (use ``on_result`` instead).
    ``acked_results`` (the sink's acknowledged results endpoint, protocol v1.1) makes
    delivery at-least-once: results are spooled until the sink acknowledges them; without
    it they are PUSHed to ``results`` at-most-once. The CLI sets it by default.
    ``streams`` are patterns: ``"cam1"`` exactly, ``"site1/"`` or ``"site1/*"`` a group,
    ``"*"`` everything. ``fps`` caps processing per stream; ``duration`` stops ``run()``.
    ``group`` makes the consumer a worker of that work group (protocol v1.2): instead of
    subscribing on ``publish`` it asks the broker's ``work`` endpoint for one frame at a
    time and gets the newest frame no other worker of the group has taken.
    ``security``: CURVE for both the broker and the sink, or plaintext for both.
    """

    name: str = field(default_factory=default_name)
    publish: str = connect_endpoint("127.0.0.1", PUBLISH_PORT)
    results: str | None = connect_endpoint("127.0.0.1", RESULTS_PORT)
    acked_results: str | None = None
    streams: tuple[str, ...] = ("*",)
    fps: float | None = None
    workers: int = 1
    duration: float | None = None
    result_buffer: int = DEFAULT_RESULT_BUFFER
    ages_kept: int = DEFAULT_AGES_KEPT
    group: str | None = None
    work: str = connect_endpoint("127.0.0.1", WORK_PORT)
    security: ClientSecurity = PLAINTEXT_CLIENT  # CURVE keys for the broker and the sink

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ConfigError(f"consumer name must be non-empty without spaces: {self.name!r}")
        parse_endpoint(self.publish)
        if self.results is not None:
            parse_endpoint(self.results)
        if self.acked_results is not None:
            parse_endpoint(self.acked_results)
        sends = self.results is not None or self.acked_results is not None
        self.security.require("broker", *(["sink"] if sends else []))
        streams = parse_patterns(self.streams)
        if not streams:
            raise ConfigError("give at least one stream pattern (e.g. cam1, site1/ or *)")
        for pattern in streams:
            try:
                subscription_for(pattern)
            except ProtocolError as exc:
                raise ConfigError(f"bad stream pattern {pattern!r}: {exc}") from None
        object.__setattr__(self, "streams", streams)
        if self.group is not None:
            self._check_group(streams)
        _check_positive("fps", self.fps)
        _check_positive("duration", self.duration)
        for name in ("workers", "result_buffer", "ages_kept"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, not {value!r}")

    def _check_group(self, streams: tuple[str, ...]) -> None:
        try:
            validate_group(self.group or "")
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        parse_endpoint(self.work)
        if self.fps is not None:
            raise ConfigError(
                "--fps does not apply to a work group: the group's workers share the frames "
                "(run fewer workers to process fewer)"
            )
        if len(streams) > MAX_GROUP_PATTERNS:
            raise ConfigError(f"a worker takes at most {MAX_GROUP_PATTERNS} stream patterns")

    def subscriptions(self) -> list[bytes]:
        """The SUB prefixes for ``streams``."""
        return [subscription_for(p) for p in self.streams]


def _check_positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number greater than 0, not {value!r}")
