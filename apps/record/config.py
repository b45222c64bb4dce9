"""RecordConfig: what ``framebroker record`` writes, where, for how long; validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from framebroker.config import (
    PUBLISH_PORT,
    connect_endpoint,
    format_bytes,
    parse_bytes,
    parse_endpoint,
    parse_positive,
)
from framebroker.consumers.config import parse_patterns
from framebroker.errors import ConfigError, ProtocolError
from framebroker.options import argparse_type, option
from framebroker.protocol import subscription_for
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.segment import DEFAULT_FSYNC_INTERVAL_S

from .condition import Condition

RAW_AS = ("raw", "jpeg")
_positive = argparse_type(parse_positive)
_bytes = argparse_type(parse_bytes)


@dataclass(frozen=True)
class RecordConfig:
    """``dir``: the recording folder; ``streams``: patterns of the streams recorded;
    ``publish``: the broker's publish endpoint (flags ``--broker``, ``--publish``)."""

    dir: str = field(
        default="",
        metadata=option("--dir", metavar="DIR", help="folder the recording is written to"),
    )
    streams: tuple[str, ...] = field(
        default=("*",),
        metadata=option(
            "--streams",
            show=",".join,
            convert=parse_patterns,
            metavar="PATTERN",
            help="streams to record, comma separated: cam1, site1/ (a group), * (all)",
        ),
    )
    publish: str = connect_endpoint("127.0.0.1", PUBLISH_PORT)
    segment_seconds: float = field(
        default=300.0,
        metadata=option(
            "--segment-seconds", type=_positive, metavar="SECONDS", help="length of a segment"
        ),
    )
    segment_bytes: int = field(
        default=1 << 30,
        metadata=option(
            "--segment-bytes",
            type=_bytes,
            show=format_bytes,
            metavar="SIZE",
            help="a segment is closed at this size even before --segment-seconds",
        ),
    )
    fsync_interval: float = field(
        default=DEFAULT_FSYNC_INTERVAL_S,
        metadata=option(
            "--fsync-interval",
            type=_positive,
            metavar="SECONDS",
            help="fsync open segments this often: a crash loses at most this much",
        ),
    )
    max_age: float | None = field(
        default=None,
        metadata=option(
            "--max-age",
            type=_positive,
            metavar="SECONDS",
            help="remove segments whose newest frame is older (default: keep)",
        ),
    )
    max_bytes: int | None = field(
        default=None,
        metadata=option(
            "--max-bytes",
            type=_bytes,
            metavar="SIZE",
            help="remove the oldest segments while the recording is larger (default: keep)",
        ),
    )
    raw_as: str = field(
        default="raw",
        metadata=option(
            "--raw-as",
            choices=RAW_AS,
            help="store raw frames as they came (lossless) or as JPEG; JPEG is never re-encoded",
        ),
    )
    quality: int = 90  # JPEG quality of --raw-as jpeg
    trigger: str | None = field(
        default=None,
        metadata=option(
            "--trigger",
            metavar="CONDITION",
            help="record only events: a result matching this (e.g. 'motion.score > 0.02') "
            "opens one (docs/recording.md); needs --results-db",
        ),
    )
    results_db: str | None = field(
        default=None,
        metadata=option(
            "--results-db", metavar="PATH", help="the sink's SQLite database, read for --trigger"
        ),
    )
    pre: float = field(
        default=5.0,
        metadata=option(
            "--pre", type=_positive, metavar="SECONDS", help="seconds kept before an event"
        ),
    )
    post: float = field(
        default=10.0,
        metadata=option(
            "--post",
            type=_positive,
            metavar="SECONDS",
            help="an event closes after this many seconds without a matching result",
        ),
    )
    receive_hwm: int = 10000  # frames the SUB socket may queue while a write is slow
    security: ClientSecurity = PLAINTEXT_CLIENT

    def __post_init__(self) -> None:
        if not self.dir:
            raise ConfigError("--dir is missing: the folder to record into")
        parse_endpoint(self.publish)
        streams = parse_patterns(self.streams)
        if not streams:
            raise ConfigError("give at least one stream pattern (e.g. cam1, site1/ or *)")
        object.__setattr__(self, "streams", streams)
        for pattern in streams:
            try:
                subscription_for(pattern)
            except ProtocolError as exc:
                raise ConfigError(f"bad stream pattern {pattern!r}: {exc}") from None
        if self.raw_as not in RAW_AS:
            raise ConfigError(f"--raw-as must be raw or jpeg, not {self.raw_as!r}")
        for name in ("segment_seconds", "fsync_interval", "pre", "post"):
            if not getattr(self, name) > 0:
                raise ConfigError(f"{name} must be greater than 0")
        if self.segment_bytes < 1 << 16:
            raise ConfigError("--segment-bytes must be at least 64k")
        if self.trigger is not None:
            self.condition  # noqa: B018  (parses: a ConfigError says where it is wrong)
            if not self.results_db:
                raise ConfigError("--trigger needs --results-db: the sink's database")
        self.security.require("broker")

    @property
    def condition(self) -> Condition | None:
        return None if self.trigger is None else Condition.parse(self.trigger)

    @property
    def subscriptions(self) -> tuple[bytes, ...]:
        return tuple(subscription_for(p) for p in self.streams)
