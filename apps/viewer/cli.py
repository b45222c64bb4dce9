"""``framebroker view``: serve the live streams to browsers, with result overlays."""

from __future__ import annotations

import argparse

from framebroker import metrics
from framebroker.cli import Command, parse_port
from framebroker.config import add_broker_options, add_option, resolve_endpoint
from framebroker.consumers.config import parse_patterns
from framebroker.protocol import subscription_for
from framebroker.security_cli import add_client_security_options, client_security
from framebroker.signals import StopOnSignals

from .metrics import ViewerCollector
from .service import Viewer, ViewerConfig


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_options(parser, "publish", "control")
    add_option(
        parser,
        "--db",
        default=None,
        metavar="PATH",
        help="the sink's SQLite database, read for result overlays (default: no results)",
    )
    add_option(parser, "--http-host", default="0.0.0.0", help="address the web server binds")
    add_option(
        parser, "--http-port", default=8080, type=parse_port, help="web server port (0: any)"
    )
    add_option(
        parser,
        "--streams",
        default="*",
        metavar="PATTERN",
        help="streams to show, comma separated: cam1, site1/ (a group), * (all)",
    )
    add_client_security_options(parser, "broker")


def run(args: argparse.Namespace) -> int:
    patterns = parse_patterns(args.streams)
    config = ViewerConfig(
        publish=resolve_endpoint(args, "publish"),
        control=resolve_endpoint(args, "control"),
        db=args.db,
        host=args.http_host,
        port=args.http_port,
        subscriptions=tuple(subscription_for(p) for p in patterns),
        security=client_security(args, "broker"),
    )
    viewer = Viewer(config)
    metrics.expose(ViewerCollector(viewer))
    with StopOnSignals(viewer.stop) as signals:
        viewer.run()
    return signals.exit_code


VIEW = Command(
    name="view",
    help="Serve a web page with every stream live and the consumers' results drawn over it.",
    add_arguments=add_arguments,
    run=run,
    metrics=True,
)
