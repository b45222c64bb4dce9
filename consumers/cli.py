"""``framebroker consume PROCESSOR --streams PATTERN``: run a processor on live frames."""

from __future__ import annotations

import argparse

from framebroker.cli import EXIT_ERROR, Command
from framebroker.cli_service import run_service
from framebroker.config import add_broker_options, add_option, parse_bool, resolve_endpoint
from framebroker.errors import ConfigError
from framebroker.options import add_options, config_from_args
from framebroker.security_cli import add_client_security_options, client_security

from .config import ConsumerConfig
from .metrics import ConsumerCollector
from .processors import BUILTINS, load_processor
from .results import print_json_line
from .runtime import Consumer
from .workers import WorkerPool


def add_arguments(parser: argparse.ArgumentParser) -> None:
    builtins = ", ".join(f"{name} ({BUILTINS[name][1]})" for name in sorted(BUILTINS))
    add_option(
        parser,
        "processor",
        default=None,
        nargs="?",
        metavar="PROCESSOR",
        help=f"a built-in: {builtins}; or module:function or path/to/file.py:function",
    )
    add_options(parser, ConsumerConfig, only=("streams", "name", "group", "plain_sub"))
    add_broker_options(parser, "publish", "results", "work")
    add_options(parser, ConsumerConfig, only=("acked_results", "sink"))
    add_option(
        parser,
        "--send-results",
        default=True,
        type=parse_bool,
        help="send results to the sink (--no-send-results: only --print them)",
    )
    add_options(parser, ConsumerConfig, only=("fps", "workers", "duration", "shm"))
    add_option(
        parser,
        "--print",
        default=False,
        type=parse_bool,
        help="also print each result as a JSON line on stdout",
    )
    add_client_security_options(parser, "broker", "sink")


def build_config(args: argparse.Namespace) -> ConsumerConfig:
    results = resolve_endpoint(args, "results") if args.send_results else None
    nowhere = {} if results is not None else {"acked_results": None}
    return config_from_args(
        ConsumerConfig,
        args,
        publish=resolve_endpoint(args, "publish"),
        results=results,
        work=resolve_endpoint(args, "work"),
        security=client_security(args),
        **nowhere,
    )


def run(args: argparse.Namespace) -> int:
    if not args.processor:
        raise ConfigError(
            f"give a PROCESSOR: one of {', '.join(sorted(BUILTINS))}, module:function "
            "or path/to/file.py:function"
        )
    config = build_config(args)
    processor = load_processor(args.processor)  # fail fast, before any worker starts
    if config.workers == 1:
        on_result = print_json_line if args.print else None
        consumer = Consumer(config, processor, on_result=on_result)
        return run_service(consumer, ConsumerCollector(consumer))
    pool = WorkerPool(config, args.processor, print_results=args.print)
    exit_code = run_service(pool)
    return exit_code if all(code == 0 for code in pool.exitcodes) else EXIT_ERROR


CONSUME = Command(
    name="consume",
    help="Run a processor on the newest frame of each stream; send results to the sink.",
    add_arguments=add_arguments,
    run=run,
    metrics=True,
)
