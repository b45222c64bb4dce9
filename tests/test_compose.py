"""compose.yaml, the Dockerfile and .dockerignore, checked without Docker: a valid Compose
file whose services our CLI understands, wired for `docker compose up --scale`, and an image
that installs every package and asks its services for their health."""

from __future__ import annotations

import argparse
import fnmatch
import json
import re
import subprocess
import sys
import tomllib
from collections import Counter
from pathlib import Path

import jsonschema
import pytest
import yaml

from framebroker.cli import load_commands, make_argument_parser
from framebroker.config import ENV_PREFIX, env_name
from tests.conftest import ROOT, free_port, wait_until

SCHEMA = ROOT / "tests" / "schemas" / "compose-spec.json"  # provenance: its README.md
COMPOSE_FILE = yaml.safe_load((ROOT / "compose.yaml").read_text())
# framebroker's own services; others (prometheus, in the `metrics` profile) are checked apart
COMPOSE = {
    **COMPOSE_FILE,
    "services": {
        n: s for n, s in COMPOSE_FILE["services"].items() if s.get("image") == "framebroker:local"
    },
}


def test_compose_file_matches_the_compose_spec():
    # The schema says draft-07 (its $schema URL lacks the "#" jsonschema looks up).
    jsonschema.Draft7Validator(json.loads(SCHEMA.read_text())).validate(COMPOSE_FILE)


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_service_command_and_environment_are_understood(name, monkeypatch):
    service = COMPOSE["services"][name]
    env = {k: interpolate(str(v)) for k, v in (service.get("environment") or {}).items()}
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


# --- compose.yaml: what `docker compose up` and `--scale` need ------------------------------

DEFAULT_SERVICES = {n: s for n, s in COMPOSE["services"].items() if not s.get("profiles")}
ROLE = {n: s["command"][0] for n, s in COMPOSE["services"].items()}
CENTRAL_PORTS = {"broker": {5555, 5556, 5558, 5560}, "sink": {5557, 5559}}


def interpolate(value: str) -> str:
    """Compose's ``${VAR:-default}`` with no variable set: the default."""
    return re.sub(r"\$\{[A-Z_]+:-([^}]*)\}", r"\1", value)


def test_every_service_is_configured_by_environment_alone():
    for name, service in COMPOSE["services"].items():
        assert service["command"] == [ROLE[name]], f"{name}: flags belong in environment"
        assert service["init"] is True, name
        assert service["image"] == "framebroker:local", name
        assert service["pull_policy"] == "never", f"{name}: the image is built here, not pulled"
    builders = [n for n, s in COMPOSE["services"].items() if "build" in s]
    assert builders == ["broker"], "one service builds the shared image (once, not per service)"


def test_services_reach_each_other_by_service_name():
    names = set(COMPOSE["services"])
    for name, service in COMPOSE["services"].items():
        env = service.get("environment") or {}
        if ROLE[name] in ("produce", "consume"):
            assert env["FRAMEBROKER_BROKER"] == "broker", name
        if ROLE[name] == "consume":
            host = re.fullmatch(r"tcp://([\w-]+):5557", env["FRAMEBROKER_RESULTS"])
            assert host and host.group(1) in names, name


def test_dependents_wait_for_healthy_services():
    for name, service in COMPOSE["services"].items():
        assert service["healthcheck"]["test"][0] == "CMD", name
        if ROLE[name] in ("broker", "sink"):
            assert "depends_on" not in service, name
            continue
        needs = {"broker"} | ({"sink"} if ROLE[name] == "consume" else set())
        depends = service["depends_on"]
        assert set(depends) == needs, name
        assert all(d["condition"] == "service_healthy" for d in depends.values()), name


def test_only_central_services_publish_ports_and_hosts_ports_are_variables():
    published = {}
    for name, service in COMPOSE["services"].items():
        assert "container_name" not in service, f"{name}: --scale needs generated names"
        for mapping in service.get("ports", []):
            host, container = str(mapping).rsplit(":", 1)
            assert re.fullmatch(r"\$\{FRAMEBROKER_[A-Z_]+_PORT:-\d+\}", host), mapping
            assert interpolate(host) == container, mapping
            published.setdefault(name, set()).add(int(container))
    assert published == CENTRAL_PORTS


def test_default_services_are_a_whole_cluster():
    roles = Counter(ROLE[n] for n in DEFAULT_SERVICES)
    assert roles["broker"] == roles["sink"] == 1
    assert roles["produce"] >= 2 and roles["consume"] >= 3
    sources = [
        s["environment"]["FRAMEBROKER_SOURCE"]
        for n, s in DEFAULT_SERVICES.items()
        if ROLE[n] == "produce"
    ]
    assert any(s.startswith("test:") for s in sources)
    assert any(s.endswith(".avi") for s in sources), "the sample video made in the image"
    processors = {
        s["environment"]["FRAMEBROKER_PROCESSOR"]
        for s in DEFAULT_SERVICES.values()
        if "FRAMEBROKER_PROCESSOR" in s.get("environment", {})
    }
    assert {"stats", "motion", "faces"} <= processors
    assert COMPOSE["services"]["sink"]["volumes"] == ["results:/data"]
    assert "results" in COMPOSE["volumes"]


def test_own_camera_template_takes_its_url_from_the_environment():
    camera = COMPOSE["services"]["camera"]
    assert camera["profiles"] == ["camera"]
    assert camera["environment"]["FRAMEBROKER_SOURCE"].startswith("${CAMERA_URL:-rtsp://")


# --- the image ------------------------------------------------------------------------------


def test_pip_install_packages_every_python_package():
    """A package missing from [tool.setuptools] works in the editable .venv, not in the image."""
    setuptools = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]
    folders = setuptools["package-dir"]  # package -> folder in the repository
    assert set(setuptools["packages"]) == set(folders)
    found = set()
    for package, folder in folders.items():
        for init in (ROOT / folder).rglob("__init__.py"):
            inner = init.parent.relative_to(ROOT / folder).parts
            found.add(".".join([package, *inner]))
    assert found <= set(setuptools["packages"])
    dockerfile = (ROOT / "Dockerfile").read_text()
    for folder in {f.split("/")[0] for f in folders.values()}:
        assert f"COPY {folder} ./{folder}" in dockerfile


def test_dockerfile_runs_as_a_user_with_a_healthcheck():
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert re.search(r"^FROM python:3\.11-slim$", dockerfile, re.M)
    assert re.search(r"^USER framebroker$", dockerfile, re.M)
    assert re.search(r"^HEALTHCHECK .*\n? *CMD \[\"framebroker-healthcheck\"\]", dockerfile, re.M)
    assert "pip install" in dockerfile and 'ENTRYPOINT ["framebroker"]' in dockerfile


def dockerignored(path: str, patterns: list[str]) -> bool:
    """Docker's rule for one path: the last matching pattern wins; a pattern matching a
    directory matches everything under it."""
    parts = path.split("/")
    prefixes = ["/".join(parts[: i + 1]) for i in range(len(parts))]
    ignored = False
    for pattern in patterns:
        negate = pattern.startswith("!")
        pattern = pattern.lstrip("!").rstrip("/")
        variants = [pattern, pattern[3:]] if pattern.startswith("**/") else [pattern]
        if any(fnmatch.fnmatchcase(p, v) for p in prefixes for v in variants):
            ignored = not negate
    return ignored


def test_build_context_is_only_what_the_image_needs():
    lines = (ROOT / ".dockerignore").read_text().splitlines()
    patterns = [line.strip() for line in lines if line.strip() and not line.startswith("#")]
    dockerfile = (ROOT / "Dockerfile").read_text()
    sources = [
        src
        for args in re.findall(r"^COPY (?!--from)(.+)$", dockerfile, re.M)
        for src in args.split()[:-1]
    ]
    assert sources and not [s for s in sources if dockerignored(s, patterns)]
    assert not dockerignored("consumers/processors/faces.py", patterns)
    for unwanted in (
        ".venv/bin/python",
        ".git/HEAD",
        "tests/conftest.py",
        "benchmarks/run.py",
        "examples/js/node_modules/zeromq/package.json",
        "framebroker/__pycache__/cli.cpython-311.pyc",
        "results.sqlite",
        "framebroker.egg-info/PKG-INFO",
    ):
        assert dockerignored(unwanted, patterns), unwanted


# --- the image's health check (docker/healthcheck.py), run here against real services ------

HEALTHCHECK = ROOT / "docker" / "healthcheck.py"


def healthcheck(role: str, env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(HEALTHCHECK), role],
        capture_output=True,
        text=True,
        timeout=30,
        env={"PATH": "/usr/bin:/bin", **env},
    )


@pytest.mark.slow
def test_healthcheck_asks_each_service_whether_it_works(cli, tmp_path):
    ports = {name: free_port() for name in ("ingest", "publish", "results", "control", "work")}
    ep = {name: f"tcp://127.0.0.1:{port}" for name, port in ports.items()}
    db = str(tmp_path / "results.sqlite")
    central = {"FRAMEBROKER_CONTROL": ep["control"], "FRAMEBROKER_RESULTS": ep["results"]}
    producer = {"FRAMEBROKER_STREAM": "hc/cam", **central}
    consumer = {"FRAMEBROKER_PUBLISH": ep["publish"], "FRAMEBROKER_RESULTS": ep["results"]}
    sink = {"FRAMEBROKER_RESULTS": ep["results"], "FRAMEBROKER_DB": db}

    for role, env in (("broker", central), ("sink", sink), ("produce", producer)):
        assert healthcheck(role, env).returncode == 1, f"{role} healthy with nothing running"

    cli.start("broker", *(f"--{n}={ep[n]}" for n in ("ingest", "publish", "control", "work")))
    cli.start("sink", "--results", ep["results"], "--db", db)
    wait_until(lambda: healthcheck("broker", central).returncode == 0, timeout=30)
    wait_until(lambda: healthcheck("sink", sink).returncode == 0, timeout=30)
    not_yet = healthcheck("produce", producer)
    assert not_yet.returncode == 1 and "'hc/cam' as live (unknown)" in not_yet.stdout

    cli.start("produce", "test:160x120@10", "--stream", "hc/cam", "--ingest", ep["ingest"])
    wait_until(lambda: healthcheck("produce", producer).returncode == 0, timeout=30)
    # a broker set: the stream is live at one of its brokers (here the second; the first
    # does not answer), which is enough
    in_a_set = {**producer, "FRAMEBROKER_CONTROL": f"tcp://127.0.0.1:{free_port()},{ep['control']}"}
    assert healthcheck("produce", in_a_set).returncode == 0
    assert healthcheck("consume", consumer).returncode == 1, "no consumer connected yet"
    consume = cli.start("consume", "stats", "--publish", ep["publish"], "--results", ep["results"])
    wait_until(lambda: healthcheck("consume", consumer).returncode == 0, timeout=30)
    cli.stop(consume)
    # a worker of a work group is connected to the broker's work port instead
    worker = {"FRAMEBROKER_GROUP": "hc", "FRAMEBROKER_WORK": ep["work"], **consumer}
    assert healthcheck("consume", worker).returncode == 1, "no worker connected yet"
    grouped = cli.start(
        *("consume", "stats", "--group", "hc", "--work", ep["work"]),
        *("--results", ep["results"]),
    )
    wait_until(lambda: healthcheck("consume", worker).returncode == 0, timeout=30)
    cli.stop(grouped)
    assert healthcheck("unknown-role", {}).returncode == 1


def test_prometheus_is_optional_and_scrapes_every_service():
    prometheus = COMPOSE_FILE["services"]["prometheus"]
    assert prometheus["profiles"] == ["metrics"], "off by default: the image may be missing"
    config = yaml.safe_load((ROOT / "docker" / "prometheus.yml").read_text())
    (sd,) = config["scrape_configs"][0]["dns_sd_configs"]
    assert set(sd["names"]) == set(COMPOSE["services"]) and sd["port"] == 9100
    assert "FRAMEBROKER_METRICS_PORT=9100" in (ROOT / "Dockerfile").read_text()


# --- compose.secure.yaml: the same cluster with CURVE (docs/security.md) ----------------------

SECURE_FILE = yaml.safe_load((ROOT / "compose.secure.yaml").read_text())
_REPLACED = {"command", "entrypoint", "test"}  # compose takes these from the last file


def compose_merge(base, override, key=""):
    """Compose's merge of ``-f base -f override`` for what these files use: maps merge, lists
    (volumes, ports) join, command-like values are replaced."""
    if isinstance(base, dict) and isinstance(override, dict):
        out = dict(base)
        for k, v in override.items():
            out[k] = compose_merge(base[k], v, k) if k in base else v
        return out
    if isinstance(base, list) and isinstance(override, list) and key not in _REPLACED:
        return base + [v for v in override if v not in base]
    return override


SECURE = compose_merge(COMPOSE_FILE, SECURE_FILE)
KEYS_DIR = "/keys"


def test_secure_compose_files_match_the_compose_spec():
    validator = jsonschema.Draft7Validator(json.loads(SCHEMA.read_text()))
    validator.validate(SECURE_FILE)
    validator.validate(SECURE)


def test_secure_profile_gives_every_service_keys_after_keygen():
    keygen = SECURE_FILE["services"]["keygen"]
    assert keygen["command"][:3] == ["keys", "generate", "--keep"]
    assert keygen["volumes"] == ["keys:/keys"] and keygen["restart"] == "no"
    assert "keys" in SECURE["volumes"] and "results" in SECURE["volumes"]
    for name in COMPOSE["services"]:
        service = SECURE["services"][name]
        assert "keys:/keys:ro" in service["volumes"], f"{name}: keys read-only"
        assert service["depends_on"]["keygen"] == {"condition": "service_completed_successfully"}
        env = service["environment"]
        assert env["FRAMEBROKER_CURVE_KEY"].startswith(KEYS_DIR + "/"), name
        if ROLE[name] in ("broker", "sink"):
            assert env["FRAMEBROKER_CURVE_ALLOW"] == "/keys/clients", name
        else:
            assert env["FRAMEBROKER_CURVE_BROKER_KEY"] == "/keys/broker.key", name
        if ROLE[name] == "consume":
            assert env["FRAMEBROKER_CURVE_SINK_KEY"] == "/keys/sink.key", name
    unchanged = {n: s for n, s in SECURE["services"].items() if n not in SECURE_FILE["services"]}
    assert set(unchanged) == {"prometheus"}


@pytest.mark.parametrize("name", sorted(COMPOSE["services"]))
def test_secure_service_environment_is_understood(name, monkeypatch):
    service = SECURE["services"][name]
    env = {k: interpolate(str(v)) for k, v in service["environment"].items()}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    parser = make_argument_parser(load_commands())
    args = parser.parse_args(service["command"])
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    flags = {env_name(opt) for a in sub.choices[args.command]._actions for opt in a.option_strings}
    flags |= {ENV_PREFIX + a.dest.upper() for a in sub.choices[args.command]._actions}
    unknown = [k for k in env if k.startswith(ENV_PREFIX) and k not in flags]
    assert not unknown, f"{name}: {unknown} match no flag of `framebroker {args.command}`"


def test_keygen_writes_every_key_the_secure_services_load(tmp_path, monkeypatch):
    """Run the keygen service's command with /keys moved to a temporary directory, then
    build every service's security from its environment: every file it names exists, and
    the broker and the sink admit every client key."""
    from framebroker.cli import main
    from framebroker.keys import load_allow_list
    from framebroker.security_cli import client_security, server_security

    here = str(tmp_path / "keys")

    def moved(value: str) -> str:
        return value.replace(KEYS_DIR, here, 1) if value.startswith(KEYS_DIR) else value

    keygen = [moved(a) for a in SECURE_FILE["services"]["keygen"]["command"]]
    assert main(keygen) == 0
    assert main(keygen) == 0, "a second `up` keeps the keys"
    commands = load_commands()
    clients = []
    for name in COMPOSE["services"]:
        service = SECURE["services"][name]
        with monkeypatch.context() as m:
            for key, value in service["environment"].items():
                m.setenv(key, moved(interpolate(str(value))))
            args = make_argument_parser(commands).parse_args(service["command"])
            if ROLE[name] in ("broker", "sink"):
                assert server_security(args).curve, name
            else:
                servers = ("broker", "sink") if ROLE[name] == "consume" else ("broker",)
                clients.append(client_security(args, *servers).keypair.public)
    allowed = load_allow_list(f"{here}/clients")
    assert clients and set(clients) <= allowed
    test = SECURE["services"]["broker"]["healthcheck"]["test"]
    assert test[:3] == ["CMD", "framebroker", "streams"] and "--curve-broker-key" in test
