"""``framebroker consume PROCESSOR --streams PATTERN``: run a processor on live frames."""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

from framebroker import metrics
from framebroker.cli import EXIT_ERROR, Command
from framebroker.config import (
    acked_endpoint,
    add_broker_options,
    add_option,
    parse_bool,
    parse_positive,
    resolve_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.security_cli import add_client_security_options, client_security
from framebroker.signals import StopOnSignals

from .config import ConsumerConfig, default_name, parse_patterns
from .metrics import ConsumerCollector
from .processors import BUILTINS, load_processor
from .results import print_json_line
from .runtime import Consumer
from .workers import WorkerPool


class _AppendPatterns(argparse.Action):
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


def parse_workers(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a whole number: {text!r}") from None
    if value < 1:
        raise ConfigError(f"must be at least 1: {text!r}")
    return value


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
    add_option(
        parser,
        "--streams",
        default="*",
        action=_AppendPatterns,
        metavar="PATTERN",
        help="streams to process, comma separated or repeated: cam1 (exactly), "
        "site1/ or site1/* (a group), * (all)",
    )
    add_option(parser, "--name", default=None, help="consumer name in results (default HOST-PID)")
    add_option(
        parser,
        "--group",
        default=None,
        metavar="NAME",
        help="join this work group: its workers share the streams' frames, each frame goes "
        "to one worker, always the newest one nobody has taken (default: every frame, fan-out)",
    )
    add_broker_options(parser, "publish", "results", "work")
    add_option(
        parser,
        "--acked-results",
        default="auto",
        help="the sink's acknowledged results endpoint (protocol v1.1: results are kept and "
        "resent until stored, at-least-once); auto: the --results port + 2; none: plain "
        "PUSH to --results (at-most-once)",
    )
    add_option(
        parser,
        "--send-results",
        default=True,
        type=parse_bool,
        help="send results to the sink (--no-send-results: only --print them)",
    )
    add_option(parser, "--fps", type=parse_positive, help="cap processing per stream (frames/s)")
    add_option(
        parser,
        "--workers",
        default=1,
        type=parse_workers,
        help="worker processes named NAME-i; each gets every frame, or with --group, "
        "each joins the group",
    )
    add_option(parser, "--duration", type=parse_positive, help="stop after this many seconds")
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
    acked = str(args.acked_results).strip()
    if results is None or acked.lower() in ("", "none", "off"):
        acked_results = None
    elif acked.lower() == "auto":
        acked_results = acked_endpoint(results)
    else:
        acked_results = acked
    return ConsumerConfig(
        name=args.name or default_name(),
        publish=resolve_endpoint(args, "publish"),
        results=results,
        acked_results=acked_results,
        streams=parse_patterns(args.streams),
        fps=args.fps,
        workers=args.workers,
        duration=args.duration,
        group=args.group or None,
        work=resolve_endpoint(args, "work"),
        security=client_security(args),
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
        metrics.expose(ConsumerCollector(consumer))
        with StopOnSignals(consumer.close) as signals:
            consumer.run()
        return signals.exit_code
    pool = WorkerPool(config, args.processor, print_results=args.print)
    with StopOnSignals(pool.close) as signals:
        pool.run()
    return signals.exit_code if all(code == 0 for code in pool.exitcodes) else EXIT_ERROR


CONSUME = Command(
    name="consume",
    help="Run a processor on the newest frame of each stream; send results to the sink.",
    add_arguments=add_arguments,
    run=run,
    metrics=True,
)
