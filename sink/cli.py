"""``framebroker sink`` (store results) and ``framebroker results`` (show them)."""

from __future__ import annotations

import argparse
import os
import sys

from framebroker.cli import EXIT_OK, Command
from framebroker.cli_service import run_service
from framebroker.config import add_option, parse_bool, parse_positive
from framebroker.options import add_options, config_from_args
from framebroker.security_cli import add_server_security_options, server_security
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


def run_results(args: argparse.Namespace) -> int:
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


def _print(text: str) -> None:
    print(text, flush=True)


RESULTS = Command(
    name="results",
    help="show results stored by the sink (a table, or JSON lines with --json)",
    add_arguments=add_results_arguments,
    run=run_results,
)
