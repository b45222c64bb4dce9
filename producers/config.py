"""ProducerConfig: everything ``framebroker produce`` needs, validated once, with its flags."""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass, field
from types import MappingProxyType

import msgpack

from framebroker.config import (
    INGEST_PORT,
    check_endpoints,
    connect_endpoint,
    env_name,
    parse_bool,
    parse_positive,
    parse_size,
)
from framebroker.errors import ConfigError, ProtocolError
from framebroker.options import Option, argparse_type, option
from framebroker.protocol import ENCODINGS, MAX_HEADER_BYTES, validate_stream_id
from framebroker.recording import TimeSpec, parse_time
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.shm import DEFAULT_SLOTS

from .spec import default_stream_name, parse_source

MAX_META_BYTES = MAX_HEADER_BYTES // 2  # leave room for the rest of the header
_META_KEY = re.compile(r"[A-Za-z_][A-Za-z0-9_.\-]*\Z")


# A camera that comes back is reopened at most this long after it is reachable again (plus
# its open time): issue 7 promises publishing again within 5 s. One attempt every 2 s
# costs a lost camera one TCP connection attempt.
MAX_BACKOFF_S = 2.0
SHM_MODES = ("auto", "on", "off", "only")
SOURCES = (
    "a camera index (0), a video file, an rtsp:// or http(s):// URL, the test pattern "
    "test:WIDTHxHEIGHT@FPS (e.g. test:640x480@30), or a recording replay:DIR/STREAM"
)


def parse_quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"JPEG quality must be an integer 1..100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise ConfigError(f"JPEG quality must be 1..100, got {value}")
    return value


def _add_meta(parser: argparse.ArgumentParser, opt: Option, default: object) -> None:
    """``--meta KEY=VALUE`` (repeated); its variable is a comma-separated list."""
    name = env_name(opt.flag)
    raw = os.environ.get(name)
    try:
        items = parse_meta_list(raw) if raw is not None else None
    except ConfigError as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None
    parser.add_argument(
        opt.flag,
        action="append",
        type=argparse_type(parse_meta_item),
        default=items,
        metavar="KEY=VALUE",
        help=f"{opt.help} [env {name} as key=value,key2=value2; flags add to it]",
    )


_positive_arg = argparse_type(parse_positive)


def parse_slots(text: str) -> int:
    """``--shm-slots``: a whole number 2..64."""
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"--shm-slots is a whole number 2..64, not {text!r}") from None
    if not 2 <= value <= 64:
        raise ConfigError(f"--shm-slots is a whole number 2..64, not {text!r}")
    return value


@dataclass(frozen=True)
class ProducerConfig:
    """A producer's configuration.

    ``stream`` is the stream id ("": named after the source, see default_stream_name);
    ``fps`` caps the publish rate (None: as fast as the source delivers); ``size`` is
    (width, height) to resize to; ``open_timeout``/``read_timeout`` bound how long OpenCV
    may block, and a source that delivers nothing for ``read_timeout`` seconds is
    reopened, with backoff up to ``max_backoff`` seconds; ``duration`` stops the producer
    after that many seconds (None: until closed or the source ends).
    """

    source: str = field(
        metadata=option("source", nargs="?", metavar="SOURCE", help=f"what to publish: {SOURCES}")
    )
    stream: str = field(
        default="",
        metadata=option(
            "--stream",
            metavar="NAME",
            help="stream id, e.g. site1/door (default: from SOURCE: test pattern -> test, "
            "camera 0 -> cam0, /videos/door.mp4 -> door, rtsp://cam7/live -> cam7/live)",
        ),
    )
    ingest: str = connect_endpoint("127.0.0.1", INGEST_PORT)  # flags: --broker, --ingest
    fps: float | None = field(
        default=None,
        metadata=option(
            "--fps",
            type=_positive_arg,
            help="publish at most this many frames per second, always the newest "
            "(default: as fast as the source delivers; files play at their native rate)",
        ),
    )
    size: tuple[int, int] | None = field(
        default=None,
        metadata=option(
            "--size", type=argparse_type(parse_size), metavar="WxH", help="resize frames to WxH"
        ),
    )
    encoding: str = field(
        default="jpeg", metadata=option("--encoding", choices=ENCODINGS, help="payload encoding")
    )
    quality: int = field(
        default=80,
        metadata=option(
            "--quality", type=argparse_type(parse_quality), metavar="1-100", help="JPEG quality"
        ),
    )
    loop: bool = field(
        default=False,
        metadata=option(
            "--loop", type=parse_bool, help="replay a video file or a recording when it ends"
        ),
    )
    meta: Mapping[str, str] = field(
        default_factory=dict,
        metadata=option(
            "--meta",
            declare=_add_meta,
            convert=dict,
            help="metadata sent in every frame header; repeat for more keys",
        ),
    )
    open_timeout: float = field(
        default=10.0,
        metadata=option(
            "--open-timeout",
            type=_positive_arg,
            metavar="SECONDS",
            help="seconds a file or URL may take to open",
        ),
    )
    read_timeout: float = field(
        default=5.0,
        metadata=option(
            "--read-timeout",
            type=_positive_arg,
            metavar="SECONDS",
            help="seconds without a new frame before the source is released and reopened",
        ),
    )
    max_backoff: float = field(
        default=MAX_BACKOFF_S,
        metadata=option(
            "--max-backoff",
            type=_positive_arg,
            metavar="SECONDS",
            help="longest wait between attempts to reopen a failed source",
        ),
    )
    duration: float | None = field(
        default=None,
        metadata=option(
            "--duration",
            type=_positive_arg,
            metavar="SECONDS",
            help="stop after this many seconds (default: never)",
        ),
    )
    speed: float = field(
        default=1.0,
        metadata=option(
            "--speed",
            type=_positive_arg,
            metavar="FACTOR",
            help="replay: play at this multiple of the recorded speed (2: twice as fast)",
        ),
    )
    start: TimeSpec | None = field(
        default=None,
        metadata=option(
            "--start",
            type=argparse_type(parse_time),
            metavar="TIME",
            help="replay: start at this time, seconds from the recording's start or "
            "2024-05-01T12:00:03",
        ),
    )
    shm: str = field(
        default="auto",
        metadata=option(
            "--shm",
            choices=SHM_MODES,
            help="also write frames to a shared-memory ring for consumers on this host (only a "
            "descriptor goes to the broker for them): auto = for raw frames when /dev/shm is "
            "usable, on, off, only = no frame message at all (remote consumers get nothing)",
        ),
    )
    shm_slots: int = field(
        default=DEFAULT_SLOTS,
        metadata=option(
            "--shm-slots",
            type=argparse_type(parse_slots),
            metavar="N",
            help="frames the shared-memory ring holds: a frame is overwritten N-1 frames later",
        ),
    )
    security: ClientSecurity = PLAINTEXT_CLIENT  # CURVE keys (framebroker.security)

    def __post_init__(self) -> None:
        parse_source(self.source)
        if self.shm not in SHM_MODES:
            raise ConfigError(f"shm must be one of {', '.join(SHM_MODES)}: {self.shm!r}")
        parse_slots(str(self.shm_slots))
        if not self.stream:
            object.__setattr__(self, "stream", default_stream_name(self.source))
        self.security.require("broker")
        try:
            validate_stream_id(self.stream)
        except ProtocolError as exc:
            raise ConfigError(f"--stream: {exc}") from None
        check_endpoints(self.ingest)
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
        _positive("speed", self.speed)
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
