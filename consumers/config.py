"""ConsumerConfig: what a consumer connects to, which streams it takes, how fast; its flags."""

from __future__ import annotations

import argparse
import logging
import os
import socket
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from typing import Any

from framebroker.config import (
    ACKED_RESULTS_PORT,
    AUTO,
    PUBLISH_PORT,
    RESULTS_PORT,
    WORK_PORT,
    acked_endpoint,
    check_endpoints,
    connect_endpoint,
    parse_bool,
    parse_endpoint,
    parse_optional_endpoint,
    parse_positive,
)
from framebroker.endpoints import parse_hosts
from framebroker.errors import ConfigError, ProtocolError
from framebroker.options import option
from framebroker.protocol import subscription_for
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.shm_protocol import BEACON_TOPIC, descriptor_subscription
from framebroker.work_protocol import MAX_GROUP_PATTERNS, validate_group

DEFAULT_RESULT_BUFFER = 1000  # results queued for a slow or absent sink before dropping
DEFAULT_AGES_KEPT = 1000  # recent frame ages kept for stats
DEFAULT_PUBLISH = connect_endpoint("127.0.0.1", PUBLISH_PORT)
DEFAULT_WORK = connect_endpoint("127.0.0.1", WORK_PORT)


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


def parse_workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise ConfigError(f"must be at least 1: {text!r}")
    return value


class AppendPatterns(argparse.Action):
    """``--streams a,b --streams c`` -> ["a", "b", "c"]; the first flag replaces the default."""

    def __call__(
        self,
        parser: argparse.ArgumentParser,
        namespace: argparse.Namespace,
        values: str | Sequence[Any] | None,
        option_string: str | None = None,
    ) -> None:
        current = getattr(namespace, self.dest, None)
        if current is self.default or not isinstance(current, list):
            current = []
        setattr(namespace, self.dest, [*current, *parse_patterns(str(values))])


def _or_none(text: str | None) -> str | None:
    return text or None


@dataclass(frozen=True)
class ConsumerConfig:
    """A consumer's settings, validated once at construction (raises ConfigError).

    ``results=None`` means results are not sent anywhere (use ``on_result`` instead).
    ``acked_results`` (the sink's acknowledged results endpoint, protocol v1.1) makes
    delivery at-least-once: results are spooled until the sink acknowledges them; None
    PUSHes them to ``results`` at-most-once. The default, ``"auto"``, is the ``results``
    port + 2 (the sink's default), as for ``framebroker consume``.
    ``streams`` are patterns: ``"cam1"`` exactly, ``"site1/"`` or ``"site1/*"`` a group,
    ``"*"`` everything. ``fps`` caps processing per stream; ``duration`` stops ``run()``.
    ``group`` makes the consumer a worker of that work group (protocol v1.2): it asks the
    broker's ``work`` endpoint for one frame at a time and gets the newest frame no other
    worker of the group has taken. Without it the consumer is a *feed* (protocol v1.6):
    it gets every stream it matches from the same ``work`` endpoint, by credit, so no
    backlog builds on a slow path; ``plain_sub`` makes it a plain SUB on ``publish``
    instead (every frame the path carries, and the backlog when it cannot). ``plain_sub``
    None (the default) means a feed, unless ``publish`` was set and ``work`` was not
    (the broker's work port is then unknown): a plain SUB, with a warning.
    ``shm`` (default True): frames whose producer writes shared memory on this host are
    read from it (a numpy view of the slot, no copy); False: always over the network.
    ``sink``: a sink set (``"s1,s2"`` or a DNS name resolving to every sink): results go
    to one live sink's acknowledged results port and move to another when it dies.
    ``security``: CURVE for both the broker and the sink, or plaintext for both.
    The endpoints' flags are ``--broker HOST`` and ``--publish/--results/--work``.
    """

    name: str = field(
        default_factory=default_name,
        metadata=option("--name", help="consumer name in results (default HOST-PID)"),
    )
    publish: str = DEFAULT_PUBLISH
    results: str | None = connect_endpoint("127.0.0.1", RESULTS_PORT)
    acked_results: str | None = field(
        default=AUTO,
        metadata=option(
            "--acked-results",
            convert=parse_optional_endpoint,
            help="the sink's acknowledged results endpoint (protocol v1.1: results are kept and "
            "resent until stored, at-least-once); auto: the --results port + 2; none: plain "
            "PUSH to --results (at-most-once)",
        ),
    )
    sink: str | None = field(
        default=None,
        metadata=option(
            "--sink",
            convert=_or_none,
            metavar="HOSTS",
            help="the sink set: HOST[:PORT],... or one DNS name resolving to every sink "
            "(tasks.sink, a headless Service); results go to the acknowledged results port "
            "(that of --acked-results, 5559 by default) of one live sink, and to another when "
            "it dies (default: the sink of --results)",
        ),
    )
    streams: tuple[str, ...] = field(
        default=("*",),
        metadata=option(
            "--streams",
            action=AppendPatterns,
            show=",".join,
            convert=parse_patterns,
            metavar="PATTERN",
            help="streams to process, comma separated or repeated: cam1 (exactly), "
            "site1/ or site1/* (a group), * (all)",
        ),
    )
    fps: float | None = field(
        default=None,
        metadata=option("--fps", type=parse_positive, help="cap processing per stream (frames/s)"),
    )
    workers: int = field(
        default=1,
        metadata=option(
            "--workers",
            type=parse_workers,
            help="worker processes named NAME-i; each gets every frame, or with --group, "
            "each joins the group",
        ),
    )
    duration: float | None = field(
        default=None,
        metadata=option("--duration", type=parse_positive, help="stop after this many seconds"),
    )
    result_buffer: int = DEFAULT_RESULT_BUFFER
    ages_kept: int = DEFAULT_AGES_KEPT
    group: str | None = field(
        default=None,
        metadata=option(
            "--group",
            convert=_or_none,
            metavar="NAME",
            help="join this work group: its workers share the streams' frames, each frame goes "
            "to one worker, always the newest one nobody has taken (default: every frame, "
            "fan-out)",
        ),
    )
    plain_sub: bool | None = field(
        default=None,
        metadata=option(
            "--plain-sub",
            type=parse_bool,
            help="take frames as a plain SUB on the publish port instead of by credit: every "
            "frame the path carries, but a path slower than the streams queues frames in the "
            "broker and the kernel, so frames arrive seconds old. Default: by credit (a feed "
            "on --work), unless --publish is given without --work",
        ),
    )
    work: str = DEFAULT_WORK
    shm: bool = field(
        default=True,
        metadata=option(
            "--shm",
            type=parse_bool,
            help="read frames from shared memory when their producer runs on this host (only "
            "a descriptor crosses the network), over the network otherwise; --no-shm: always "
            "the network",
        ),
    )
    security: ClientSecurity = PLAINTEXT_CLIENT  # CURVE keys for the broker and the sink

    def __post_init__(self) -> None:
        if not self.name or any(c.isspace() for c in self.name):
            raise ConfigError(f"consumer name must be non-empty without spaces: {self.name!r}")
        check_endpoints(self.publish)  # one broker or a set (framebroker.endpoints)
        if self.results is not None:
            parse_endpoint(self.results)
        if self.acked_results == AUTO:
            auto = None if self.results is None else acked_endpoint(self.results)
            object.__setattr__(self, "acked_results", auto)
        if self.acked_results is not None:
            parse_endpoint(self.acked_results)
        if self.sink is not None:
            self._check_sink_set()
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
        check_endpoints(self.work)  # one broker or a set, as publish
        if self.plain_sub is None:
            object.__setattr__(self, "plain_sub", self._auto_plain_sub())
        if self.group is not None:
            self._check_group(streams)
        elif not self.plain_sub and len(streams) > MAX_GROUP_PATTERNS:
            raise ConfigError(
                f"a feed takes at most {MAX_GROUP_PATTERNS} stream patterns (or use --plain-sub)"
            )
        _check_positive("fps", self.fps)
        _check_positive("duration", self.duration)
        for name in ("workers", "result_buffer", "ages_kept"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < 1:
                raise ConfigError(f"{name} must be an integer >= 1, not {value!r}")

    def _auto_plain_sub(self) -> bool:
        """A publish endpoint of its own but the default work endpoint: the broker's work
        port is unknown (a broker on other ports), so take frames by plain SUB, and say so."""
        plain = self.publish != DEFAULT_PUBLISH and self.work == DEFAULT_WORK
        if plain and self.group is None:
            logging.getLogger("framebroker.consumer").warning(
                "--publish %s given without --work: taking frames as a plain SUB, which "
                "queues frames on a slow path; give the broker's --work endpoint to take "
                "them by credit",
                self.publish,
            )
        return plain

    def _check_sink_set(self) -> None:
        parse_hosts(self.sink or "")
        if self.acked_results is None:
            raise ConfigError(
                "--sink needs acknowledged results (a result goes to another sink when one dies"
                " only if the sink acknowledges it): drop --acked-results none"
            )

    def sink_port(self) -> int:
        """The port of the sink set's hosts that name none: the --acked-results port."""
        if self.acked_results is not None and self.acked_results.startswith("tcp://"):
            port = self.acked_results.rsplit(":", 1)[1]
            if port.isdigit() and port != "0":
                return int(port)
        return ACKED_RESULTS_PORT

    def _check_group(self, streams: tuple[str, ...]) -> None:
        try:
            validate_group(self.group or "")
        except ProtocolError as exc:
            raise ConfigError(str(exc)) from None
        if self.fps is not None:
            raise ConfigError(
                "--fps does not apply to a work group: the group's workers share the frames "
                "(run fewer workers to process fewer)"
            )
        if len(streams) > MAX_GROUP_PATTERNS:
            raise ConfigError(f"a worker takes at most {MAX_GROUP_PATTERNS} stream patterns")

    def subscriptions(self) -> list[bytes]:
        """The SUB prefixes for ``streams`` (frames over the network only)."""
        return [subscription_for(p) for p in self.streams]

    @property
    def uses_shm(self) -> bool:
        """Whether the receive path starts from descriptors (shared memory, not a group)."""
        return self.shm and self.group is None

    def receive_subscriptions(self) -> list[bytes]:
        """What the SUB socket subscribes to at first: the broker's beacon and the
        descriptor topics of ``streams`` when reading shared memory (each stream's own
        topic is added if its frames turn out to come over the network), and
        :meth:`subscriptions` until the broker's beacon arrives (kept if none comes: a
        direct PUB or an older broker); else :meth:`subscriptions`."""
        if self.uses_shm:
            shm = [BEACON_TOPIC, *(descriptor_subscription(p) for p in self.streams)]
            return shm + self.subscriptions()
        return self.subscriptions()


def _check_positive(name: str, value: float | None) -> None:
    if value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int | float) or not value > 0:
        raise ConfigError(f"{name} must be a number greater than 0, not {value!r}")
