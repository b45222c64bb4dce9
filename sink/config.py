"""SinkConfig: where the sink binds, where it stores, how it batches; validated once."""

from __future__ import annotations

from dataclasses import dataclass, field

from framebroker.config import (
    AUTO,
    RESULTS_PORT,
    acked_endpoint,
    bind_endpoint,
    format_bytes,
    parse_bytes,
    parse_endpoint,
    parse_optional_endpoint,
    parse_positive,
    sink_control_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.options import option
from framebroker.security import PLAINTEXT_SERVER, ServerSecurity

DEFAULT_DB = "framebroker-results.sqlite"
# Results are maps of numbers and short strings. Decoding msgpack can take ~75x the
# message in memory (a 16 MiB body of nested empty arrays: 1.2 GB and 4.8 s), so a
# generous 1 MiB bounds what one message may cost; raise it for processors that need it.
DEFAULT_MAX_MESSAGE_SIZE = 1 << 20


@dataclass(frozen=True)
class SinkConfig:
    """Everything the sink needs; validated on construction (ConfigError).

    ``acked_results``: the acknowledged results endpoint (protocol v1.1); ``auto`` is the
    ``results`` port + 2, None turns it off. ``control``: the control endpoint (v1.5, ping
    and stats); ``auto`` is the ``results`` port + 4 (5561), None turns it off.
    ``rcvhwm``: messages queued per peer; ``max_pending``: distinct results kept for retry
    while the store is failing.
    """

    results: str = field(
        default=bind_endpoint(RESULTS_PORT),
        metadata=option(
            "--results",
            type=parse_endpoint,
            help="endpoint to bind for results (plain clients PUSH here, at-most-once)",
        ),
    )
    acked_results: str | None = field(
        default=AUTO,
        metadata=option(
            "--acked-results",
            type=parse_optional_endpoint,
            help="endpoint to bind for acknowledged results (protocol v1.1, DEALER clients);"
            " auto: the --results port + 2; none: off",
        ),
    )
    control: str | None = field(
        default=AUTO,
        metadata=option(
            "--control",
            type=parse_optional_endpoint,
            help="endpoint to bind for control requests (protocol v1.5: ping, stats);"
            " auto: the --results port + 4 (5561); none: off",
        ),
    )
    db: str = field(
        default=DEFAULT_DB,
        metadata=option(
            "--db",
            help="results database: a SQLite file, or postgresql://USER@HOST/DBNAME "
            "(a server several sinks share)",
        ),
    )
    jsonl: str | None = field(
        default=None, metadata=option("--jsonl", help="also append results to this JSON Lines file")
    )
    max_message_size: int = field(
        default=DEFAULT_MAX_MESSAGE_SIZE,
        metadata=option(
            "--max-message-size",
            type=parse_bytes,
            show=format_bytes,
            help="largest result message accepted, on both results ports; a peer sending more "
            "is disconnected",
        ),
    )
    batch_size: int = field(
        default=100, metadata=option("--batch-size", type=int, help="results per write transaction")
    )
    flush_interval: float = field(
        default=0.2,
        metadata=option(
            "--flush-interval",
            type=parse_positive,
            help="seconds a result may wait before it is written",
        ),
    )
    rcvhwm: int = 10_000
    max_pending: int = 100_000
    security: ServerSecurity = PLAINTEXT_SERVER  # CURVE on both ports, or on none

    def __post_init__(self) -> None:
        parse_endpoint(self.results)
        if self.acked_results == AUTO:
            object.__setattr__(self, "acked_results", acked_endpoint(self.results))
        if self.acked_results is not None:
            parse_endpoint(self.acked_results)
        if self.control == AUTO:
            object.__setattr__(self, "control", sink_control_endpoint(self.results))
        if self.control is not None:
            parse_endpoint(self.control)
        if not self.db:
            raise ConfigError("the results database path (--db) must not be empty")
        if self.jsonl == "":
            raise ConfigError("--jsonl needs a file path")
        if self.max_message_size < 1024:
            raise ConfigError(f"max message size {self.max_message_size} is below 1 KiB")
        if self.batch_size < 1:
            raise ConfigError(f"batch size must be at least 1, not {self.batch_size}")
        if not 0 < self.flush_interval <= 60:
            raise ConfigError(f"flush interval must be in (0, 60] s, not {self.flush_interval}")
        if self.rcvhwm < 1 or self.max_pending < self.batch_size:
            raise ConfigError("rcvhwm must be >= 1 and max_pending >= batch_size")
