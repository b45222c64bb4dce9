"""``framebroker broker`` (run the broker) and ``framebroker streams`` (ask it what it sees)."""

from __future__ import annotations

import argparse
import functools
import json
import sys
import threading
from typing import Any

from framebroker import control
from framebroker.brokerset import EndpointSet
from framebroker.cli import EXIT_ERROR, EXIT_OK, Command
from framebroker.cli_service import run_service
from framebroker.config import (
    add_broker_options,
    add_option,
    parse_bool,
    parse_positive,
    resolve_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.options import add_options, config_from_args
from framebroker.security import ClientSecurity
from framebroker.security_cli import (
    add_client_security_options,
    add_server_security_options,
    client_security,
    server_security,
)
from framebroker.signals import StopOnSignals

from .config import BrokerConfig
from .limits import BrokerLimits
from .metrics import BrokerCollector
from .service import Broker
from .set_view import broker_name, health, merge_streams, print_set
from .tables import print_groups, print_stats, print_streams

# --- framebroker broker ------------------------------------------------------------------


def add_broker_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, BrokerConfig)
    add_server_security_options(parser)
    add_options(parser, BrokerLimits)


def broker_config(args: argparse.Namespace) -> BrokerConfig:
    return config_from_args(
        BrokerConfig,
        args,
        security=server_security(args),
        limits=config_from_args(BrokerLimits, args),
    )


def run_broker(args: argparse.Namespace) -> int:
    broker = Broker(broker_config(args))
    return run_service(broker, BrokerCollector(broker))


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
    members = EndpointSet(endpoint, every=0)
    members.resolve()
    if not members.single:
        if args.watch:
            raise ConfigError("--watch shows one broker; for a set, run without --watch")
        return run_set_streams(args, ",".join(members.members()), security)
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


def run_set_streams(args: argparse.Namespace, endpoints: str, security: ClientSecurity) -> int:
    """``framebroker streams`` for a broker set: every broker asked, the answers merged."""
    ask = functools.partial(control.request_all, endpoints, timeout=args.timeout, security=security)
    answers = ask("streams")
    extras = {extra: ask(extra) for extra in ("stats", "groups") if getattr(args, extra)}
    if args.json:
        out: dict[str, Any] = {"streams": merge_streams(answers), "brokers": health(answers)}
        for extra, replies in extras.items():
            out[extra] = {broker_name(a.endpoint): a.reply for a in replies}
        print(json.dumps(out, indent=2, sort_keys=True))
    else:
        print_set(answers, sys.stdout)
        for extra, replies in extras.items():
            for answer in replies:
                if answer.reply is None or not answer.reply.get("ok"):
                    continue
                print(f"\nbroker {broker_name(answer.endpoint)}", file=sys.stdout)
                if extra == "groups":
                    print_groups(answer.reply.get("groups", []), sys.stdout)
                else:
                    print_stats(answer.reply, sys.stdout)
    return EXIT_OK if any(a.up for a in answers) else EXIT_ERROR


STREAMS = Command(
    name="streams",
    help="List the streams the broker sees (size, encoding, fps, frames, age).",
    add_arguments=add_streams_arguments,
    run=run_streams,
)
