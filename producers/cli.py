"""``framebroker produce SOURCE``: parse flags, build a ProducerConfig, run a Producer."""

from __future__ import annotations

import argparse
import os

import cv2

from framebroker import options
from framebroker.cli import Command
from framebroker.cli_service import run_service
from framebroker.config import add_broker_options, resolve_endpoint
from framebroker.errors import ConfigError
from framebroker.security_cli import add_client_security_options, client_security

from .config import SOURCES, ProducerConfig
from .metrics import ProducerCollector
from .producer import Producer
from .replayer import Replayer
from .spec import parse_source

_FIRST = ("source", "stream")  # then --broker and --ingest, then the other fields' flags


def add_arguments(parser: argparse.ArgumentParser) -> None:
    options.add_options(parser, ProducerConfig, only=_FIRST)
    add_broker_options(parser, "ingest")
    options.add_options(parser, ProducerConfig, skip=_FIRST)
    add_client_security_options(parser, "broker")


def config_from_args(args: argparse.Namespace) -> ProducerConfig:
    """The one place flags become a ProducerConfig (raises ConfigError)."""
    if not args.source:
        raise ConfigError(f"SOURCE is missing: give {SOURCES}, or set FRAMEBROKER_SOURCE")
    return options.config_from_args(
        ProducerConfig,
        args,
        ingest=resolve_endpoint(args, "ingest"),
        security=client_security(args, "broker"),
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    if parse_source(config.source).kind == "replay":
        return run_service(Replayer(config))
    quiet_opencv()
    producer = Producer(config)
    return run_service(producer, ProducerCollector(producer))


def quiet_opencv() -> None:
    """OpenCV warns on every failed open; the grabber already logs once per state change.

    Left alone when the user sets OPENCV_LOG_LEVEL.
    """
    if "OPENCV_LOG_LEVEL" not in os.environ:
        cv2.utils.logging.setLogLevel(cv2.utils.logging.LOG_LEVEL_ERROR)


PRODUCE = Command(
    name="produce",
    help="publish a camera, video file, stream URL or test pattern to the broker",
    add_arguments=add_arguments,
    run=run,
    metrics=True,
)
