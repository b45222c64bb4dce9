"""``framebroker record`` (write streams to disk) and ``framebroker export`` (read them back)."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from framebroker.cli import Command
from framebroker.cli_service import run_service
from framebroker.config import add_broker_options, add_option, resolve_endpoint
from framebroker.errors import ConfigError
from framebroker.options import add_options, argparse_type, config_from_args
from framebroker.recording import RecordedStream, Recording, StreamInfo, open_stream, parse_time
from framebroker.security_cli import add_client_security_options, client_security

from .config import RecordConfig
from .export import export_still, export_video
from .service import Recorder


def add_record_arguments(parser: argparse.ArgumentParser) -> None:
    add_broker_options(parser, "publish")
    add_options(parser, RecordConfig)
    add_client_security_options(parser, "broker")


def record_config(args: argparse.Namespace) -> RecordConfig:
    return config_from_args(
        RecordConfig,
        args,
        publish=resolve_endpoint(args, "publish"),
        security=client_security(args, "broker"),
    )


def run_record(args: argparse.Namespace) -> int:
    return run_service(Recorder(record_config(args)))


RECORD = Command(
    name="record",
    help="write every frame of the matching streams to segment files (docs/recording.md)",
    add_arguments=add_record_arguments,
    run=run_record,
)


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("recording", metavar="DIR", help="a recording (record --dir)")
    time_arg = argparse_type(parse_time)
    add_option(parser, "--stream", default=None, help="the stream (needed if DIR holds several)")
    add_option(
        parser,
        "--start",
        default=None,
        type=time_arg,
        metavar="TIME",
        help="from this time: seconds from the start or 2024-05-01T12:00:03",
    )
    add_option(
        parser,
        "--end",
        default=None,
        type=time_arg,
        metavar="TIME",
        help="up to this time (same forms as --start)",
    )
    add_option(
        parser,
        "--at",
        default=None,
        type=time_arg,
        metavar="TIME",
        help="export the still image shown at this time instead of a video",
    )
    add_option(
        parser,
        "--output",
        default=None,
        metavar="FILE",
        help="the file to write: .mp4, .mkv, .avi (video) or .jpg, .png (--at)",
    )
    parser.add_argument("--list", action="store_true", help="list the recorded streams")


def _stream(args: argparse.Namespace) -> RecordedStream:
    if args.stream:
        return Recording(args.recording).stream(args.stream)
    return open_stream(args.recording)


def _describe(info: StreamInfo) -> str:
    start = time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(info.start_ns / 1e9))
    length = (info.end_ns - info.start_ns) / 1e9
    return (
        f"{info.stream:<24} {start}  {length:>9.1f} s  {info.frames:>8} frames  "
        f"{info.segments:>4} segments  {info.bytes / 1e6:>9.1f} MB"
    )


def run_export(args: argparse.Namespace) -> int:
    if args.list:
        for stream in Recording(args.recording).streams():
            print(_describe(stream.info()))
        return 0
    if not args.output:
        raise ConfigError("--output is missing: the file to write (e.g. clip.mp4)")
    stream = _stream(args)
    start_ns = stream.info().start_ns
    out = Path(args.output)
    if args.at is not None:
        export_still(stream, args.at.resolve(start_ns), out)
        print(f"wrote {out}")
        return 0
    start = args.start.resolve(start_ns) if args.start else None
    end = args.end.resolve(start_ns) if args.end else None
    done = export_video(stream, out, start, end)
    print(
        f"wrote {done.path}: {done.frames} frames, {done.width}x{done.height}, {done.fps:.2f} fps"
    )
    return 0


EXPORT = Command(
    name="export",
    help="export a recorded stream as MP4/MKV, a still image, or list a recording",
    add_arguments=add_export_arguments,
    run=run_export,
)
