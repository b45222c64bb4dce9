"""``framebroker sink`` (store results) and ``framebroker results`` (show them)."""

from __future__ import annotations

import argparse
import os
import sys

from framebroker import metrics
from framebroker.cli import EXIT_OK, Command
from framebroker.config import (
    RESULTS_PORT,
    add_option,
    bind_endpoint,
    parse_bool,
    parse_bytes,
    parse_endpoint,
    parse_positive,
)
from framebroker.security_cli import add_server_security_options, server_security
from framebroker.signals import StopOnSignals

from .metrics import SinkCollector
from .results import follow, show
from .service import AUTO, DEFAULT_DB, Sink, SinkConfig
from .store import SQLiteStore


def add_db_option(parser: argparse.ArgumentParser) -> None:
    add_option(parser, "--db", default=DEFAULT_DB, help="SQLite results database")


# --- framebroker sink ---------------------------------------------------------------------


def add_sink_arguments(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--results",
        default=bind_endpoint(RESULTS_PORT),
        type=parse_endpoint,
        help="endpoint to bind for results (plain clients PUSH here, at-most-once)",
    )
    add_option(
        parser,
        "--acked-results",
        default=AUTO,
        type=_optional_endpoint,
        help="endpoint to bind for acknowledged results (protocol v1.1, DEALER clients);"
        " auto: the --results port + 2; none: off",
    )
    add_db_option(parser)
    add_option(parser, "--jsonl", default=None, help="also append results to this JSON Lines file")
    add_option(
        parser,
        "--max-message-size",
        default="1M",
        type=parse_bytes,
        help="largest result message accepted, on both results ports; a peer sending more "
        "is disconnected",
    )
    add_option(parser, "--batch-size", default=100, type=int, help="results per write transaction")
    add_option(
        parser,
        "--flush-interval",
        default=0.2,
        type=parse_positive,
        help="seconds a result may wait before it is written",
    )
    add_server_security_options(parser)


def run_sink(args: argparse.Namespace) -> int:
    config = SinkConfig(
        results=args.results,
        acked_results=args.acked_results,
        db=args.db,
        jsonl=args.jsonl,
        max_message_size=args.max_message_size,
        batch_size=args.batch_size,
        flush_interval=args.flush_interval,
        security=server_security(args),
    )
    sink = Sink(config)
    metrics.expose(SinkCollector(sink))
    sink.start()
    try:
        with StopOnSignals(sink.stop) as signals:
            sink.run()
    finally:
        sink.close()
    return signals.exit_code


def _optional_endpoint(text: str) -> str | None:
    lowered = text.strip().lower()
    if lowered == AUTO:
        return AUTO
    return None if lowered in ("", "none", "off") else parse_endpoint(text)


SINK = Command(
    name="sink",
    help="store results pushed by consumers in SQLite (and optionally JSON Lines)",
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
    store = SQLiteStore.open_existing(args.db)  # StoreError -> exit 1 with its message
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
