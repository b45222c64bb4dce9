"""``framebroker produce SOURCE``: parse flags, build a ProducerConfig, run a Producer."""

from __future__ import annotations

import argparse
import os
from collections.abc import Callable
from typing import Any

import cv2

from framebroker import metrics
from framebroker.cli import Command
from framebroker.config import (
    add_broker_options,
    add_option,
    env_name,
    parse_bool,
    parse_positive,
    parse_size,
    resolve_endpoint,
)
from framebroker.errors import ConfigError
from framebroker.protocol import ENCODINGS
from framebroker.security_cli import add_client_security_options, client_security
from framebroker.signals import StopOnSignals

from .config import MAX_BACKOFF_S, ProducerConfig, parse_meta_item, parse_meta_list
from .metrics import ProducerCollector
from .producer import Producer
from .spec import default_stream_name

SOURCES = (
    "a camera index (0), a video file, an rtsp:// or http(s):// URL, or the test pattern "
    "test:WIDTHxHEIGHT@FPS (e.g. test:640x480@30)"
)


def _arg(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    """Make a parser's ConfigError message argparse's own (not "invalid value")."""

    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def parse_quality(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise ConfigError(f"JPEG quality must be an integer 1..100, got {text!r}") from None
    if not 1 <= value <= 100:
        raise ConfigError(f"JPEG quality must be 1..100, got {value}")
    return value


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "source",
        nargs="?",
        default=os.environ.get("FRAMEBROKER_SOURCE"),
        metavar="SOURCE",
        help=f"what to publish: {SOURCES} [env FRAMEBROKER_SOURCE]",
    )
    add_option(
        parser,
        "--stream",
        metavar="NAME",
        help="stream id, e.g. site1/door (default: from SOURCE: test pattern -> test, "
        "camera 0 -> cam0, /videos/door.mp4 -> door, rtsp://cam7/live -> cam7/live)",
    )
    add_broker_options(parser, "ingest")
    positive = _arg(parse_positive)
    add_option(
        parser,
        "--fps",
        type=positive,
        help="publish at most this many frames per second, always the newest "
        "(default: as fast as the source delivers; files play at their native rate)",
    )
    add_option(parser, "--size", type=_arg(parse_size), metavar="WxH", help="resize frames to WxH")
    add_option(parser, "--encoding", default="jpeg", choices=ENCODINGS, help="payload encoding")
    add_option(
        parser,
        "--quality",
        default=80,
        type=_arg(parse_quality),
        metavar="1-100",
        help="JPEG quality",
    )
    add_option(
        parser, "--loop", default=False, type=parse_bool, help="replay a video file when it ends"
    )
    _add_meta(parser)
    add_option(
        parser,
        "--open-timeout",
        default=10.0,
        type=positive,
        metavar="SECONDS",
        help="seconds a file or URL may take to open",
    )
    add_option(
        parser,
        "--read-timeout",
        default=5.0,
        type=positive,
        metavar="SECONDS",
        help="seconds without a new frame before the source is released and reopened",
    )
    add_option(
        parser,
        "--max-backoff",
        default=MAX_BACKOFF_S,
        type=positive,
        metavar="SECONDS",
        help="longest wait between attempts to reopen a failed source",
    )
    add_option(
        parser,
        "--duration",
        type=positive,
        metavar="SECONDS",
        help="stop after this many seconds (default: never)",
    )
    add_client_security_options(parser, "broker")


def _add_meta(parser: argparse.ArgumentParser) -> None:
    name = env_name("--meta")
    raw = os.environ.get(name)
    try:
        default = parse_meta_list(raw) if raw is not None else None
    except ConfigError as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None
    parser.add_argument(
        "--meta",
        action="append",
        type=_arg(parse_meta_item),
        default=default,
        metavar="KEY=VALUE",
        help="metadata sent in every frame header; repeat for more keys "
        f"[env {name} as key=value,key2=value2; flags add to it]",
    )


def config_from_args(args: argparse.Namespace) -> ProducerConfig:
    """The one place flags become a ProducerConfig (raises ConfigError)."""
    if not args.source:
        raise ConfigError(f"SOURCE is missing: give {SOURCES}, or set FRAMEBROKER_SOURCE")
    return ProducerConfig(
        source=args.source,
        stream=args.stream or default_stream_name(args.source),
        ingest=resolve_endpoint(args, "ingest"),
        fps=args.fps,
        size=args.size,
        encoding=args.encoding,
        quality=args.quality,
        loop=args.loop,
        open_timeout=args.open_timeout,
        read_timeout=args.read_timeout,
        max_backoff=args.max_backoff,
        meta=dict(args.meta or ()),
        duration=args.duration,
        security=client_security(args, "broker"),
    )


def run(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    quiet_opencv()
    producer = Producer(config)
    metrics.expose(ProducerCollector(producer))
    with StopOnSignals(producer.close) as signals:
        try:
            producer.run()
        finally:
            producer.close()
    return signals.exit_code


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
