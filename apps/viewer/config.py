"""ViewerConfig: where the viewer gets frames, streams and results, where it serves them."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from framebroker.cli import parse_port
from framebroker.config import (
    CONTROL_PORT,
    PUBLISH_PORT,
    WORK_PORT,
    check_endpoints,
    connect_endpoint,
    parse_bool,
)
from framebroker.consumers.config import parse_patterns
from framebroker.errors import ConfigError, ProtocolError
from framebroker.options import option
from framebroker.protocol import subscription_for
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity

DEFAULT_PUBLISH = connect_endpoint("127.0.0.1", PUBLISH_PORT)
DEFAULT_WORK = connect_endpoint("127.0.0.1", WORK_PORT)


@dataclass(frozen=True)
class ViewerConfig:
    """``publish``/``control``/``work``: the broker's endpoints (flags ``--broker``,
    ``--publish``, ``--control``, ``--work``); frames come by credit from ``work`` (a feed,
    protocol v1.6) unless ``plain_sub``; ``db``: the sink's database (SQLite file or
    postgresql:// URL) for result overlays (None: none); ``host``/``port``: where the web
    server binds (port 0: any free one); ``streams``: patterns of the streams shown;
    ``recordings``: a recording folder played back at ``/recordings`` (None: no
    recordings); ``quality``: JPEG quality for raw streams."""

    publish: str = DEFAULT_PUBLISH
    control: str = connect_endpoint("127.0.0.1", CONTROL_PORT)
    work: str = DEFAULT_WORK
    plain_sub: bool | None = field(
        default=None,
        metadata=option(
            "--plain-sub",
            type=parse_bool,
            help="take frames as a plain SUB on the publish port instead of by credit from the "
            "work port (default: by credit, unless --publish is given without --work)",
        ),
    )
    db: str | None = field(
        default=None,
        metadata=option(
            "--db",
            metavar="DB",
            help="the sink's database (SQLite file or postgresql://USER@HOST/DBNAME), read for "
            "result overlays (default: no results)",
        ),
    )
    host: str = field(
        default="0.0.0.0", metadata=option("--http-host", help="address the web server binds")
    )
    port: int = field(
        default=8080,
        metadata=option("--http-port", type=parse_port, help="web server port (0: any)"),
    )
    streams: tuple[str, ...] = field(
        default=("*",),
        metadata=option(
            "--streams",
            show=",".join,
            convert=parse_patterns,
            metavar="PATTERN",
            help="streams to show, comma separated: cam1, site1/ (a group), * (all)",
        ),
    )
    recordings: str | None = field(
        default=None,
        metadata=option(
            "--recordings",
            metavar="DIR",
            help="a recording folder (framebroker record --dir) to list and play back at "
            "/recordings (default: none)",
        ),
    )
    quality: int = 80  # for raw streams, encoded to JPEG for the browser
    security: ClientSecurity = PLAINTEXT_CLIENT  # CURVE keys for the broker

    def __post_init__(self) -> None:
        check_endpoints(self.publish)  # one broker or a set: every broker is subscribed to
        check_endpoints(self.control)
        check_endpoints(self.work)
        if self.plain_sub is None:  # no work endpoint of its own beside its own publish one
            plain = self.publish != DEFAULT_PUBLISH and self.work == DEFAULT_WORK
            object.__setattr__(self, "plain_sub", plain)
        streams = parse_patterns(self.streams)
        if not streams:
            raise ConfigError("give at least one stream pattern (e.g. cam1, site1/ or *)")
        object.__setattr__(self, "streams", streams)
        for pattern in streams:
            try:
                subscription_for(pattern)
            except ProtocolError as exc:
                raise ConfigError(f"bad stream pattern {pattern!r}: {exc}") from None
        if self.recordings is not None and not Path(self.recordings).is_dir():
            raise ConfigError(f"--recordings {self.recordings}: not a folder")
        if not 0 <= self.port <= 65535:
            raise ConfigError(f"port out of range 0..65535: {self.port}")
        self.security.require("broker")

    @property
    def subscriptions(self) -> tuple[bytes, ...]:
        """The SUB prefixes of ``streams``."""
        return tuple(subscription_for(p) for p in self.streams)
