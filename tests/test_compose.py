"""compose.yaml is a valid Compose file and every service's command is one our CLI takes."""

from __future__ import annotations

import argparse
import json
from pathlib import Path

import pytest
import yaml

from framebroker.cli import load_commands, make_argument_parser
from framebroker.config import ENV_PREFIX, env_name
from tests.conftest import ROOT

SCHEMA = ROOT.parent / "shared" / "schemas" / "compose-spec.json"
COMPOSE = yaml.safe_load((ROOT / "compose.yaml").read_text())


def test_compose_file_matches_the_compose_spec():
    jsonschema = pytest.importorskip("jsonschema")
    if not SCHEMA.exists():
        pytest.skip(f"the compose-spec schema is not at {SCHEMA}")
    # The schema says draft-07 (its $schema URL lacks the "#" jsonschema looks up).
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(COMPOSE)


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_service_command_and_environment_are_understood(name, monkeypatch):
    service = COMPOSE["services"][name]
    env = {k: str(v) for k, v in (service.get("environment") or {}).items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = make_argument_parser(load_commands())
    args = parser.parse_args(service["command"])  # SystemExit on anything unknown
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {env_name(opt) for a in sub.choices[args.command]._actions for opt in a.option_strings}
    flags |= {ENV_PREFIX + a.dest.upper() for a in sub.choices[args.command]._actions}
    unknown = [k for k in env if k.startswith(ENV_PREFIX) and k not in flags]
    assert not unknown, f"{name}: {unknown} match no flag of `framebroker {args.command}`"


def test_dockerfile_copies_every_package():
    dockerfile = (ROOT / "Dockerfile").read_text()
    for package in ("framebroker", "broker", "producers", "consumers"):
        assert f"COPY {package} ./{package}" in dockerfile
    assert Path(ROOT / "pyproject.toml").exists()
