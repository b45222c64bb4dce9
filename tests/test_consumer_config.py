"""ConsumerConfig validation and the consume command's flags (and FRAMEBROKER_* env)."""

from __future__ import annotations

import argparse

import pytest

from framebroker.consumers import ConsumerConfig, parse_patterns
from framebroker.consumers.cli import add_arguments, build_config
from framebroker.errors import ConfigError


def parse(argv, monkeypatch=None, **env):
    if monkeypatch is not None:
        for name, value in env.items():
            monkeypatch.setenv(name, value)
    parser = argparse.ArgumentParser()
    add_arguments(parser)
    return parser.parse_args(argv)


def test_defaults():
    config = ConsumerConfig()
    assert config.publish == "tcp://127.0.0.1:5556"
    assert config.results == "tcp://127.0.0.1:5557"
    assert config.streams == ("*",) and config.workers == 1 and config.fps is None
    assert "-" in config.name


def test_patterns_are_split_and_become_subscriptions():
    assert parse_patterns(["cam1, site1/*", "cam1", "*"]) == ("cam1", "site1/*", "*")
    config = ConsumerConfig(streams=("cam1,site1/", "site2/*"))
    assert config.streams == ("cam1", "site1/", "site2/*")
    assert config.subscriptions() == [b"cam1\x00", b"site1/", b"site2/"]


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"fps": 0}, "fps"),
        ({"duration": -1}, "duration"),
        ({"workers": 0}, "workers"),
        ({"result_buffer": 0}, "result_buffer"),
        ({"streams": ()}, "at least one stream"),
        ({"streams": ("bad id!",)}, "bad stream pattern"),
        ({"publish": "localhost:5556"}, "not a ZeroMQ endpoint"),
        ({"results": "nowhere"}, "not a ZeroMQ endpoint"),
        ({"name": "two words"}, "name"),
    ],
)
def test_bad_values_raise_config_error(kwargs, message):
    with pytest.raises(ConfigError, match=message):
        ConsumerConfig(**kwargs)


def test_flags_build_the_config():
    args = parse(
        [
            "motion",
            "--streams",
            "cam1,cam2",
            "--streams",
            "site1/",
            "--name",
            "c1",
            "--broker",
            "10.0.0.5",
            "--fps",
            "5",
            "--workers",
            "3",
            "--duration",
            "2",
        ]
    )
    config = build_config(args)
    assert args.processor == "motion"
    assert config.streams == ("cam1", "cam2", "site1/")
    assert config.name == "c1" and config.fps == 5.0 and config.workers == 3
    assert config.publish == "tcp://10.0.0.5:5556"
    assert config.results == "tcp://10.0.0.5:5557"
    assert config.duration == 2.0


def test_env_configures_and_flags_win(monkeypatch):
    env = {
        "FRAMEBROKER_PROCESSOR": "qr",
        "FRAMEBROKER_STREAMS": "a,b",
        "FRAMEBROKER_RESULTS": "tcp://sink:7000",
        "FRAMEBROKER_WORKERS": "2",
    }
    config = build_config(args := parse([], monkeypatch, **env))
    assert args.processor == "qr"
    assert config.streams == ("a", "b") and config.workers == 2
    assert config.results == "tcp://sink:7000"
    config = build_config(parse(["stats", "--streams", "c"], monkeypatch, **env))
    assert config.streams == ("c",)  # the flag replaces the env's list


def test_no_send_results_means_no_sink():
    assert build_config(parse(["stats", "--no-send-results"])).results is None


def test_bad_worker_count_is_a_usage_error():
    with pytest.raises(SystemExit):
        parse(["stats", "--workers", "0"])
