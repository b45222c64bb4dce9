"""Shared configuration: value parsers and flags that also read FRAMEBROKER_* variables."""

from __future__ import annotations

import argparse

import pytest

from framebroker import config
from framebroker.errors import ConfigError


def parser_with(env, *flags):
    parser = argparse.ArgumentParser()
    for flag, kwargs in flags:
        config.add_option(parser, flag, env=env, **kwargs)
    return parser


def test_env_name():
    assert config.env_name("--max-message-size") == "FRAMEBROKER_MAX_MESSAGE_SIZE"


def test_flag_default_env_and_command_line_precedence():
    flags = [("--fps", {"default": 30.0, "type": config.parse_positive})]
    assert parser_with({}, *flags).parse_args([]).fps == 30.0
    assert parser_with({"FRAMEBROKER_FPS": "12.5"}, *flags).parse_args([]).fps == 12.5
    args = parser_with({"FRAMEBROKER_FPS": "12.5"}, *flags).parse_args(["--fps", "5"])
    assert args.fps == 5.0


def test_bad_env_value_names_the_variable():
    with pytest.raises(ConfigError, match="FRAMEBROKER_FPS"):
        parser_with({"FRAMEBROKER_FPS": "fast"}, ("--fps", {"type": config.parse_positive}))


def test_boolean_switch_from_env_and_flags():
    flags = [("--loop", {"default": False, "type": config.parse_bool})]
    assert parser_with({}, *flags).parse_args([]).loop is False
    assert parser_with({"FRAMEBROKER_LOOP": "yes"}, *flags).parse_args([]).loop is True
    assert parser_with({"FRAMEBROKER_LOOP": "1"}, *flags).parse_args(["--no-loop"]).loop is False
    with pytest.raises(ConfigError):
        parser_with({"FRAMEBROKER_LOOP": "maybe"}, *flags)


def test_parse_size():
    assert config.parse_size("640x480") == (640, 480)
    assert config.parse_size(" 1920X1080 ") == (1920, 1080)
    for bad in ("640", "0x480", "640x", "axb", "99999x1"):
        with pytest.raises(ConfigError):
            config.parse_size(bad)


def test_parse_bytes():
    assert config.parse_bytes("1048576") == 1 << 20
    assert config.parse_bytes("64M") == 64 << 20
    assert config.parse_bytes("512k") == 512 << 10
    assert config.parse_bytes("2GiB") == 2 << 30
    with pytest.raises(ConfigError):
        config.parse_bytes("lots")


def test_parse_positive():
    assert config.parse_positive("0.5") == 0.5
    for bad in ("0", "-1", "x"):
        with pytest.raises(ConfigError):
            config.parse_positive(bad)


@pytest.mark.parametrize(
    "endpoint",
    [
        "tcp://127.0.0.1:5555",
        "tcp://*:5556",
        "tcp://broker:1",
        "tcp://[::1]:5557",
        "ipc:///tmp/fb",
        "inproc://x",
    ],
)
def test_valid_endpoints(endpoint):
    assert config.parse_endpoint(endpoint) == endpoint


@pytest.mark.parametrize("endpoint", ["127.0.0.1:5555", "tcp://host", "http://x:1", ""])
def test_invalid_endpoints(endpoint):
    with pytest.raises(ConfigError, match="not a ZeroMQ endpoint"):
        config.parse_endpoint(endpoint)


def test_broker_options_resolve_host_and_overrides():
    parser = argparse.ArgumentParser()
    config.add_broker_options(parser, "publish", "results")
    args = parser.parse_args(["--broker", "broker.lan"])
    assert config.resolve_endpoint(args, "publish") == "tcp://broker.lan:5556"
    assert config.resolve_endpoint(args, "results") == "tcp://broker.lan:5557"
    args = parser.parse_args(["--results", "tcp://sink:7000"])
    assert config.resolve_endpoint(args, "results") == "tcp://sink:7000"
    assert config.resolve_endpoint(args, "publish") == "tcp://127.0.0.1:5556"


def test_connect_endpoint_brackets_ipv6():
    assert config.connect_endpoint("::1", 5555) == "tcp://[::1]:5555"
