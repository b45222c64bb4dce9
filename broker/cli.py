"""``framebroker broker`` (run the broker) and ``framebroker streams`` (ask it what it sees)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
from typing import Any

from framebroker import control, metrics
from framebroker.cli import EXIT_ERROR, EXIT_OK, Command
from framebroker.config import (
    CONTROL_PORT,
    INGEST_PORT,
    PUBLISH_PORT,
    WORK_PORT,
    add_broker_options,
    add_option,
    bind_endpoint,
    parse_bool,
    parse_bytes,
    parse_endpoint,
    parse_positive,
    resolve_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.security_cli import (
    add_client_security_options,
    add_server_security_options,
    client_security,
    server_security,
)
from framebroker.signals import StopOnSignals

from .config import (
    AUTO,
    DEFAULT_FORGET_AFTER,
    DEFAULT_LOG_STATS,
    DEFAULT_PUBLISH_HWM,
    DEFAULT_STALE_AFTER,
    BrokerConfig,
)
from .groups import DEFAULT_MAX_GROUPS, DEFAULT_MAX_WORKERS, DEFAULT_WORKER_TIMEOUT
from .limits import (
    DEFAULT_CACHE_SEND_RATE,
    DEFAULT_MAX_STREAMS,
    DEFAULT_MAX_SUBSCRIPTIONS,
    BrokerLimits,
)
from .metrics import BrokerCollector
from .service import Broker
from .tables import print_groups, print_stats, print_streams

# --- framebroker broker ------------------------------------------------------------------


def parse_seconds(text: str) -> float:
    """A duration in seconds, 0 allowed (meaning "off" / "never" where documented)."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise ConfigError(f"must be 0 or more seconds: {text!r}")
    return value


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    endpoints = (
        ("ingest", INGEST_PORT, "producers connect here (SUB)"),
        ("publish", PUBLISH_PORT, "consumers subscribe here (XPUB)"),
        ("control", CONTROL_PORT, "`framebroker streams` asks here (ROUTER)"),
    )
    for name, port, what in endpoints:
        add_option(
            parser,
            f"--{name}",
            default=bind_endpoint(port),
            type=parse_endpoint,
            metavar="ENDPOINT",
            help=f"{name} endpoint to bind; {what}",
        )
    add_option(
        parser,
        "--work",
        default=AUTO,
        type=lambda text: text if text == AUTO else parse_endpoint(text),
        metavar="ENDPOINT",
        help=f"work endpoint to bind; workers of work groups (`consume --group`) ask here "
        f"(ROUTER); auto: the control port + 2 (tcp://*:{WORK_PORT})",
    )
    add_option(
        parser,
        "--max-message-size",
        default="64M",
        type=parse_bytes,
        metavar="BYTES",
        help="largest frame message accepted; libzmq disconnects a producer sending more",
    )
    add_option(
        parser,
        "--stale-after",
        default=DEFAULT_STALE_AFTER,
        type=parse_positive,
        metavar="SECONDS",
        help="seconds without frames after which a stream is stale (its cached frame dropped)",
    )
    add_option(
        parser,
        "--forget-after",
        default=DEFAULT_FORGET_AFTER,
        type=parse_seconds,
        metavar="SECONDS",
        help="seconds without frames after which a stream is forgotten (0 = never)",
    )
    add_option(
        parser,
        "--log-stats",
        default=DEFAULT_LOG_STATS,
        type=parse_seconds,
        metavar="SECONDS",
        help="seconds between one-line stats logs (0 = off)",
    )
    add_option(
        parser,
        "--publish-hwm",
        default=DEFAULT_PUBLISH_HWM,
        type=int,
        metavar="FRAMES",
        help="frames queued per subscriber before the broker drops frames for it",
    )
    add_option(
        parser,
        "--max-groups",
        default=DEFAULT_MAX_GROUPS,
        type=int,
        metavar="N",
        help="work groups served at once; a worker of one more group is refused",
    )
    add_option(
        parser,
        "--max-workers",
        default=DEFAULT_MAX_WORKERS,
        type=int,
        metavar="N",
        help="workers per work group; one more is refused",
    )
    add_option(
        parser,
        "--worker-timeout",
        default=DEFAULT_WORKER_TIMEOUT,
        type=parse_positive,
        metavar="SECONDS",
        help="a worker that sends no request for this long leaves its group",
    )
    add_server_security_options(parser)
    add_limit_arguments(parser)


# (flag, default, type, metavar, help): the bounds of broker/limits.py
_LIMITS: tuple[tuple[str, Any, Any, str, str], ...] = (
    ("--max-streams", DEFAULT_MAX_STREAMS, int, "N",
     "streams known at once; frames of one more new stream are dropped (stale streams are "
     "forgotten early to make room)"),
    ("--max-subscriptions", DEFAULT_MAX_SUBSCRIPTIONS, int, "N",
     "distinct subscriptions tracked; one more gets no cached frames"),
    ("--cache-budget", "1G", parse_bytes, "BYTES",
     "newest frames cached for new subscribers, all streams together (0: none)"),
    ("--cache-send-rate", DEFAULT_CACHE_SEND_RATE, parse_positive, "PER_SECOND",
     "times per second a stream's cached frame is sent to new subscriptions, at most"),
    ("--max-subscription-size", "256", parse_bytes, "BYTES",
     "largest subscription message; libzmq disconnects a subscriber sending more"),
    ("--max-control-size", "64k", parse_bytes, "BYTES",
     "largest control request; libzmq disconnects a client sending more"),
)  # fmt: skip


def add_limit_arguments(parser: argparse.ArgumentParser) -> None:
    for flag, default, type_, metavar, help_ in _LIMITS:
        add_option(parser, flag, default=default, type=type_, metavar=metavar, help=help_)


def broker_limits(args: argparse.Namespace) -> BrokerLimits:
    return BrokerLimits(
        max_streams=args.max_streams,
        max_subscriptions=args.max_subscriptions,
        cache_budget=args.cache_budget,
        cache_send_rate=args.cache_send_rate,
        max_subscription_size=args.max_subscription_size,
        max_control_size=args.max_control_size,
    )


def broker_config(args: argparse.Namespace) -> BrokerConfig:
    return BrokerConfig(
        ingest=args.ingest,
        publish=args.publish,
        control=args.control,
        max_message_size=args.max_message_size,
        stale_after=args.stale_after,
        forget_after=args.forget_after,
        log_stats=args.log_stats,
        publish_hwm=args.publish_hwm,
        work=args.work,
        max_groups=args.max_groups,
        max_workers=args.max_workers,
        worker_timeout=args.worker_timeout,
        security=server_security(args),
        limits=broker_limits(args),
    )


def run_broker(args: argparse.Namespace) -> int:
    broker = Broker(broker_config(args))
    metrics.expose(BrokerCollector(broker))
    with StopOnSignals(broker.stop) as signals:
        try:
            broker.start()
            broker.run()
        finally:
            broker.close()
    return signals.exit_code


BROKER = Command(
    name="broker",
    help="Run the frame broker: ingest from producers, publish to consumers, keep the "
    "newest frame per stream, answer `framebroker streams`.",
    add_arguments=add_broker_arguments,
    run=run_broker,
    metrics=True,
)

# --- framebroker streams -----------------------------------------------------------------


def add_streams_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_options(parser, "control")
    add_option(parser, "--json", default=False, type=parse_bool, help="print the reply as JSON")
    add_option(parser, "--stats", default=False, type=parse_bool, help="also print broker totals")
    add_option(
        parser,
        "--groups",
        default=False,
        type=parse_bool,
        help="also print the work groups and their workers",
    )
    add_option(
        parser,
        "--watch",
        default=False,
        type=parse_bool,
        help="a live table, redrawn every --interval seconds until Ctrl-C",
    )
    add_option(
        parser,
        "--interval",
        default=1.0,
        type=parse_positive,
        metavar="SECONDS",
        help="seconds between redraws with --watch",
    )
    add_option(
        parser,
        "--count",
        default=None,
        type=int,
        metavar="N",
        help="with --watch: stop after N redraws (default: until Ctrl-C)",
    )
    add_option(
        parser,
        "--timeout",
        default=2.0,
        type=parse_positive,
        metavar="SECONDS",
        help="seconds to wait for the broker's answer",
    )
    add_client_security_options(parser, "broker")


def run_streams(args: argparse.Namespace) -> int:
    endpoint = resolve_endpoint(args, "control")
    security = client_security(args, "broker")
    if args.watch:
        from .watch import watch  # rich: only for the live table

        stop = threading.Event()
        with StopOnSignals(stop.set) as signals:
            watch(
                endpoint,
                interval=args.interval,
                timeout=args.timeout,
                stop=stop,
                count=args.count,
                security=security,
            )
        return signals.exit_code
    ask = functools.partial(control.request, endpoint, timeout=args.timeout, security=security)
    replies = {"streams": ask("streams")}
    for extra in ("stats", "groups"):
        if getattr(args, extra):
            replies[extra] = ask(extra)
    for reply in replies.values():
        if not reply.get("ok"):
            print(f"framebroker streams: broker error: {reply.get('error')}", file=sys.stderr)
            return EXIT_ERROR
    if args.json:
        # Alone, the streams reply itself; with --stats or --groups, {"streams": ..., ...}.
        out: Any = replies if len(replies) > 1 else replies["streams"]
        print(json.dumps(out, indent=2, sort_keys=True))
        return EXIT_OK
    print_streams(replies["streams"].get("streams", []), sys.stdout)
    if "groups" in replies:
        print_groups(replies["groups"].get("groups", []), sys.stdout)
    if "stats" in replies:
        print_stats(replies["stats"], sys.stdout)
    return EXIT_OK


STREAMS = Command(
    name="streams",
    help="List the streams the broker sees (size, encoding, fps, frames, age).",
    add_arguments=add_streams_arguments,
    run=run_streams,
)
