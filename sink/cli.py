"""``framebroker sink`` (store results) and ``framebroker results`` (show them)."""

from __future__ import annotations

import argparse
import json
import os
import sys
from collections.abc import Mapping
from typing import Any

from framebroker import control
from framebroker.cli import EXIT_ERROR, EXIT_OK, Command
from framebroker.cli_service import run_service
from framebroker.config import (
    SINK_CONTROL_PORT,
    add_option,
    connect_endpoint,
    parse_bool,
    parse_endpoint,
    parse_positive,
)
from framebroker.options import add_options, config_from_args
from framebroker.security_cli import (
    add_client_security_options,
    add_server_security_options,
    client_security,
    server_security,
)
from framebroker.signals import StopOnSignals

from .config import SinkConfig
from .metrics import SinkCollector
from .results import follow, show
from .service import Sink
from .store import open_reader


def add_db_option(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SinkConfig, only=("db",))


# --- framebroker sink ---------------------------------------------------------------------


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    add_options(parser, SinkConfig)
    add_server_security_options(parser)


def sink_config(args: argparse.Namespace) -> SinkConfig:
    return config_from_args(SinkConfig, args, security=server_security(args))


def run_sink(args: argparse.Namespace) -> int:
    sink = Sink(sink_config(args))
    return run_service(sink, SinkCollector(sink))


SINK = Command(
    name="sink",
    help="store results pushed by consumers in SQLite or PostgreSQL (and optionally JSON Lines)",
    add_arguments=add_sink_arguments,
    run=run_sink,
    metrics=True,
)


# --- framebroker results ------------------------------------------------------------------


def add_results_arguments(parser: argparse.ArgumentParser) -> None:
    add_db_option(parser)
    add_option(
        parser,
        "--stream",
        default=None,
        help="only this stream (cam1), or a group (site1/ or site1/*)",
    )
    add_option(
        parser,
        "--limit",
        default=20,
        type=int,
        help="show the newest N results (0: all)",
    )
    add_option(
        parser,
        "--follow",
        default=False,
        type=parse_bool,
        help="keep printing new results as they arrive, until Ctrl-C",
    )
    add_option(parser, "--json", default=False, type=parse_bool, help="print JSON lines")
    add_option(
        parser,
        "--interval",
        default=0.5,
        type=parse_positive,
        help="with --follow: seconds between looks at the database",
    )
    add_option(
        parser,
        "--stats",
        default=False,
        type=parse_bool,
        help="print the running sink's counters (its control port) instead of results",
    )
    add_option(parser, "--sink", default="127.0.0.1", help="with --stats: the sink's host")
    add_option(
        parser,
        "--sink-control",
        default=None,
        type=parse_endpoint,
        help=f"with --stats: the sink's control endpoint; overrides --sink "
        f"(tcp://HOST:{SINK_CONTROL_PORT})",
    )
    add_option(
        parser,
        "--timeout",
        default=2.0,
        type=parse_positive,
        metavar="SECONDS",
        help="with --stats: seconds to wait for the sink's answer",
    )
    add_client_security_options(parser, "sink")


def run_results(args: argparse.Namespace) -> int:
    if args.stats:
        return run_sink_stats(args)
    store = open_reader(args.db)  # StoreError -> exit 1 with its message
    stopping: list[bool] = []
    try:
        last, table = show(
            store,
            _print,
            stream=args.stream,
            limit=args.limit if args.limit > 0 else None,
            as_json=args.json,
        )
        if args.follow:
            with StopOnSignals(lambda: stopping.append(True)):
                follow(
                    store,
                    _print,
                    after_id=last,
                    table=table,
                    stream=args.stream,
                    interval=args.interval,
                    should_stop=lambda: bool(stopping),
                )
    except BrokenPipeError:  # `framebroker results | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
    finally:
        store.close()
    return EXIT_OK


def run_sink_stats(args: argparse.Namespace) -> int:
    """``results --stats``: the sink's ``stats`` over its control port (any language can)."""
    endpoint = args.sink_control or connect_endpoint(args.sink, SINK_CONTROL_PORT)
    reply = control.request(
        endpoint,
        "stats",
        timeout=args.timeout,
        security=client_security(args, "sink"),
        server="sink",
    )
    if not reply.get("ok"):
        print(f"framebroker results: sink error: {reply.get('error')}", file=sys.stderr)
        return EXIT_ERROR
    if args.json:
        print(json.dumps(reply, indent=2, sort_keys=True))
    else:
        print_sink_stats(reply)
    return EXIT_OK


def print_sink_stats(stats: Mapping[str, Any]) -> None:
    print("sink totals")
    keys = sorted(k for k in stats if k not in ("v", "ok"))
    width = max(map(len, keys), default=0)
    for key in keys:
        value = stats[key]
        if isinstance(value, dict):
            value = ", ".join(f"{k}={v}" for k, v in sorted(value.items())) or "-"
        elif isinstance(value, float):
            value = f"{value:.1f}"
        print(f"  {key.ljust(width)}  {value}")


def _print(text: str) -> None:
    print(text, flush=True)


RESULTS = Command(
    name="results",
    help="show results stored by the sink (a table, or JSON lines with --json), or with "
    "--stats the running sink's counters",
    add_arguments=add_results_arguments,
    run=run_results,
)
