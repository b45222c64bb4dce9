"""The ``framebroker`` command: a thin dispatcher to the roles' commands.

Roles register commands under the ``framebroker.commands`` entry-point group (see
pyproject.toml); this module finds them there, so the core never imports a role.
Each command parses its flags (every flag also readable from ``FRAMEBROKER_<FLAG>``;
a config field declares its own flag, :mod:`framebroker.options`), builds its frozen
config, and calls the library; a long-running command ends in
:func:`framebroker.cli_service.run_service`.
"""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from importlib.metadata import entry_points

from framebroker import metrics
from framebroker.config import add_option
from framebroker.errors import ConfigError, FrameBrokerError
from framebroker.logs import LOG_FORMATS, setup_logging

EXIT_OK = 0
EXIT_ERROR = 1  # a runtime failure (cannot bind, source lost for good, ...)
EXIT_USAGE = 2  # bad flags or configuration
EXIT_INTERRUPTED = 130  # Ctrl-C

log = logging.getLogger("framebroker")


@dataclass(frozen=True)
class Command:
    """One ``framebroker <name>`` subcommand, contributed by a role package."""

    name: str
    help: str
    add_arguments: Callable[[argparse.ArgumentParser], None]
    run: Callable[[argparse.Namespace], int]
    metrics: bool = False  # a long-running service: gets --metrics-port (framebroker.metrics)


def load_commands(only: str | None = None) -> dict[str, Command]:
    """The roles' commands; just ``only`` when it names one (so ``framebroker broker``
    imports the broker's modules and nothing of the other roles: no cv2, no aiohttp)."""
    commands: dict[str, Command] = {}
    found = list(entry_points(group="framebroker.commands"))
    if only in {ep.name for ep in found}:
        found = [ep for ep in found if ep.name == only]
    for ep in found:
        try:
            command = ep.load()
        except Exception as exc:  # one broken role must not take every command down
            print(f"framebroker: command {ep.name!r} is unavailable: {exc}", file=sys.stderr)
            continue
        if isinstance(command, Command):
            commands[command.name] = command
    return commands


def make_argument_parser(commands: dict[str, Command]) -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="framebroker",
        description="ZeroMQ frame broker: producers publish camera frames, consumers always "
        "process the newest one, results are stored.",
    )
    parser.add_argument(
        "--log-level",
        default=None,
        help="DEBUG, INFO, WARNING or ERROR [env FRAMEBROKER_LOG_LEVEL]",
    )
    parser.add_argument(
        "--log-format",
        default=None,
        choices=LOG_FORMATS,
        help="text (one line per event) or json (one JSON object per line) "
        "[env FRAMEBROKER_LOG_FORMAT]",
    )
    sub = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    for name in sorted(commands):
        command = commands[name]
        p = sub.add_parser(name, help=command.help, description=command.help)
        command.add_arguments(p)
        if command.metrics:
            add_metrics_option(p)
    return parser


def command_name(argv: Sequence[str]) -> str | None:
    """The command word of ``argv``: the first argument that is not a global option."""
    args = iter(argv)
    for arg in args:
        if arg in ("--log-level", "--log-format"):
            next(args, None)
        elif not arg.startswith("-"):
            return arg
    return None


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    commands = load_commands(only=command_name(argv))
    if not commands:
        print(
            "framebroker: no commands found; is the package installed (pip install .)?",
            file=sys.stderr,
        )
        return EXIT_ERROR
    try:
        parser = make_argument_parser(commands)
    except ConfigError as exc:  # a malformed FRAMEBROKER_* variable
        print(f"framebroker: {exc}", file=sys.stderr)
        return EXIT_USAGE
    args = parser.parse_args(argv)
    setup_logging(args.log_level, args.log_format)
    if args.log_format:  # worker processes set up their logging from the environment
        os.environ["FRAMEBROKER_LOG_FORMAT"] = args.log_format
    try:
        metrics.serve(getattr(args, "metrics_port", 0) or 0)
        return commands[args.command].run(args)
    except ConfigError as exc:
        print(f"framebroker {args.command}: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except FrameBrokerError as exc:
        print(f"framebroker {args.command}: {exc}", file=sys.stderr)
        return EXIT_ERROR
    except KeyboardInterrupt:
        return EXIT_INTERRUPTED
    finally:
        metrics.shutdown()


def add_metrics_option(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--metrics-port",
        default=0,
        type=parse_port,
        metavar="PORT",
        help="serve Prometheus metrics on http://0.0.0.0:PORT/metrics (0: off)",
    )


def parse_port(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"not a port number: {text!r}") from None
    if not 0 <= value <= 65535:
        raise ConfigError(f"port out of range 0..65535: {value}")
    return value
