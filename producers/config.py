"""ProducerConfig: everything ``framebroker produce`` needs, validated once."""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import msgpack

from framebroker.config import INGEST_PORT, connect_endpoint, parse_endpoint
from framebroker.errors import ConfigError, ProtocolError
from framebroker.protocol import ENCODINGS, MAX_HEADER_BYTES, validate_stream_id
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity

from .spec import parse_source

MAX_META_BYTES = MAX_HEADER_BYTES // 2  # leave room for the rest of the header
_META_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


# A camera that comes back is reopened at most this long after it is reachable again (plus
# its open time): issue 7 promises publishing again within 5 s. One attempt every 2 s
# costs a lost camera one TCP connection attempt.
MAX_BACKOFF_S = 2.0


@dataclass(frozen=True)
class ProducerConfig:
    """A producer's configuration.

    ``fps`` caps the publish rate (None: as fast as the source delivers); ``size`` is
    (width, height) to resize to; ``open_timeout``/``read_timeout`` bound how long OpenCV
    may block, and a source that delivers nothing for ``read_timeout`` seconds is
    reopened, with backoff up to ``max_backoff`` seconds; ``duration`` stops the producer
    after that many seconds (None: until closed or the source ends).
    """

    source: str
    stream: str
    ingest: str = connect_endpoint("127.0.0.1", INGEST_PORT)
    fps: float | None = None
    size: tuple[int, int] | None = None
    encoding: str = "jpeg"
    quality: int = 80
    loop: bool = False
    open_timeout: float = 10.0
    read_timeout: float = 5.0
    max_backoff: float = MAX_BACKOFF_S
    meta: Mapping[str, str] = field(default_factory=dict)
    duration: float | None = None
    security: ClientSecurity = PLAINTEXT_CLIENT  # CURVE keys (framebroker.security)

    def __post_init__(self) -> None:
        parse_source(self.source)
        self.security.require("broker")
        try:
            validate_stream_id(self.stream)
        except ProtocolError as exc:
            raise ConfigError(f"--stream: {exc}") from None
        parse_endpoint(self.ingest)
        if self.encoding not in ENCODINGS:
            raise ConfigError(f"encoding must be one of {', '.join(ENCODINGS)}: {self.encoding!r}")
        if isinstance(self.quality, bool) or not 1 <= self.quality <= 100:
            raise ConfigError(f"JPEG quality must be 1..100, got {self.quality!r}")
        if self.size is not None and not (
            len(self.size) == 2 and all(isinstance(v, int) and 0 < v <= 16384 for v in self.size)
        ):
            raise ConfigError(f"size must be (width, height) in 1..16384, got {self.size!r}")
        _positive("fps", self.fps, optional=True)
        _positive("duration", self.duration, optional=True)
        _positive("open timeout", self.open_timeout)
        _positive("read timeout", self.read_timeout)
        _positive("max backoff", self.max_backoff)
        object.__setattr__(self, "meta", MappingProxyType(_check_meta(self.meta)))


def _positive(name: str, value: float | None, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number greater than 0, got {value!r}")


def _check_meta(meta: Mapping[str, str]) -> dict[str, str]:
    out = dict(meta)
    for key, value in out.items():
        if not isinstance(key, str) or not _META_KEY.match(key):
            raise ConfigError(
                f"metadata key {key!r}: use letters, digits and _ . - (starting with a letter)"
            )
        if not isinstance(value, str):
            raise ConfigError(f"metadata value for {key!r} must be a string, got {value!r}")
    if len(msgpack.packb(out)) > MAX_META_BYTES:
        raise ConfigError(f"metadata too large: at most {MAX_META_BYTES} bytes encoded")
    return out


def parse_meta_item(text: str) -> tuple[str, str]:
    """``"site=lobby"`` -> ("site", "lobby")."""
    key, sep, value = text.partition("=")
    key = key.strip()
    if not sep or not key:
        raise ConfigError(f"metadata must look like key=value, got {text!r}")
    if not _META_KEY.match(key):
        raise ConfigError(f"metadata key {key!r}: use letters, digits and _ . -")
    return key, value


def parse_meta_list(text: str) -> list[tuple[str, str]]:
    """``"site=lobby,floor=2"`` -> [("site", "lobby"), ("floor", "2")] (for the env var)."""
    return [parse_meta_item(part) for part in text.split(",") if part.strip()]
