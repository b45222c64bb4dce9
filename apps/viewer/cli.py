"""``framebroker view``: serve the live streams to browsers, with result overlays."""

from __future__ import annotations

import argparse

from framebroker.cli import Command
from framebroker.cli_service import run_service
from framebroker.config import add_broker_options, resolve_endpoint
from framebroker.options import add_options, config_from_args
from framebroker.security_cli import add_client_security_options, client_security

from .config import ViewerConfig
from .metrics import ViewerCollector
from .service import Viewer


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_options(parser, "publish", "control", "work")
    add_options(parser, ViewerConfig)
    add_client_security_options(parser, "broker")


def viewer_config(args: argparse.Namespace) -> ViewerConfig:
    return config_from_args(
        ViewerConfig,
        args,
        publish=resolve_endpoint(args, "publish"),
        control=resolve_endpoint(args, "control"),
        work=resolve_endpoint(args, "work"),
        security=client_security(args, "broker"),
    )


def run(args: argparse.Namespace) -> int:
    viewer = Viewer(viewer_config(args))
    return run_service(viewer, ViewerCollector(viewer))


VIEW = Command(
    name="view",
    help="Serve a web page with every stream live and the consumers' results drawn over it.",
    add_arguments=add_arguments,
    run=run,
    metrics=True,
)
