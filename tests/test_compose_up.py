"""`docker compose up` for real: the image is built, the cluster comes up healthy, frames
flow and results are stored; a consumer attaches from outside through the published ports,
a consumer service scales to three replicas, and every service stops with exit code 0.

Runs the "Docker compose" steps of docs/deployment.md on free host ports
(FRAMEBROKER_*_PORT) under a project name of its own, and always ends with
`docker compose down -v`. Needs a Docker engine with the compose plugin: skipped without
one on a user's machine, failed in CI (.ci/run starts one with
../shared/tools/docker-setup.sh).
"""

from __future__ import annotations

import json
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT, CliProcesses, free_port, require, wait_until

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(300)]

COMPOSE_FILE = ROOT / "compose.yaml"
SERVICES: dict[str, Any] = yaml.safe_load(COMPOSE_FILE.read_text())["services"]
DEFAULT = {name: s for name, s in SERVICES.items() if not s.get("profiles")}
PRODUCERS = {n: s for n, s in DEFAULT.items() if s["command"][0] == "produce"}
CONSUMERS = {n: s for n, s in DEFAULT.items() if s["command"][0] == "consume"}
STREAMS = {s["environment"]["FRAMEBROKER_STREAM"] for s in PRODUCERS.values()}
FRAMEBROKER = (sys.executable, "-m", "framebroker")
PORTS = ("INGEST", "PUBLISH", "RESULTS", "CONTROL", "ACKED_RESULTS", "WORK")
# Counts per (consumer, stream) in the sink's database, asked inside the sink container.
COUNT_RESULTS = (
    "import json, os, sqlite3;"
    "db = sqlite3.connect(f\"file:{os.environ['FRAMEBROKER_DB']}?mode=ro\", uri=True);"
    "print(json.dumps(db.execute("
    "'SELECT consumer, stream, count(*) FROM results GROUP BY consumer, stream').fetchall()))"
)

# Frames (stream, session, seq) stored more than once by consumers named with the prefixes
# in argv: for a work group's replicas, there must be none.
GROUP_REPEATS = (
    "import json, os, sqlite3, sys;"
    "db = sqlite3.connect(f\"file:{os.environ['FRAMEBROKER_DB']}?mode=ro\", uri=True);"
    "where = ' OR '.join('consumer LIKE ?' for _ in sys.argv[1:]);"
    "print(json.dumps(db.execute('SELECT stream, session, seq FROM results WHERE ' + where +"
    "' GROUP BY stream, session, seq HAVING count(*) > 1', [p + '%' for p in sys.argv[1:]])"
    ".fetchall()))"
)


def docker_missing() -> str | None:
    """What is missing to run `docker compose` here, or None."""
    if shutil.which("docker") is None:
        return "the docker CLI"
    for argv, what in (
        (["docker", "info"], "a running Docker engine"),
        (["docker", "compose", "version"], "the docker compose plugin"),
    ):
        try:
            done = subprocess.run(argv, capture_output=True, timeout=60)
        except subprocess.TimeoutExpired:
            return what
        if done.returncode != 0:
            return what
    return None


class Compose:
    """`docker compose` on this checkout's compose.yaml, under one project name."""

    def __init__(self) -> None:
        self.project = f"fbtest-{os.getpid()}-{secrets.token_hex(3)}"
        self.ports = {name: free_port() for name in PORTS}
        # Only our variables: a developer's COMPOSE_PROFILES or CAMERA_URL must not add services.
        env = {k: v for k, v in os.environ.items() if not k.startswith(("COMPOSE_", "CAMERA_"))}
        env.update({f"FRAMEBROKER_{name}_PORT": str(port) for name, port in self.ports.items()})
        self.env = env
        self.timings: dict[str, float] = {}

    def __call__(
        self, *args: str, timeout: float = 240, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        argv = ["docker", "compose", "-f", str(COMPOSE_FILE), "-p", self.project, *args]
        done = subprocess.run(
            argv, capture_output=True, text=True, timeout=timeout, env=self.env, cwd=ROOT
        )
        if check and done.returncode != 0:
            pytest.fail(f"`{' '.join(argv[5:])}` failed:\n{done.stdout}\n{done.stderr}")
        return done

    def timed(self, label: str, *args: str, timeout: float = 240) -> None:
        start = time.monotonic()
        self(*args, timeout=timeout)
        self.timings[label] = time.monotonic() - start

    def endpoint(self, port: str) -> str:
        return f"tcp://127.0.0.1:{self.ports[port]}"

    def streams(self) -> list[dict[str, Any]]:
        """`framebroker streams --json` from this machine, through the published port."""
        done = subprocess.run(
            [*FRAMEBROKER, "streams", "--json", "--control", self.endpoint("CONTROL")],
            capture_output=True,
            text=True,
            timeout=30,
        )
        return list(json.loads(done.stdout or "{}").get("streams", []))

    def container_ids(self, service: str) -> list[str]:
        return self("ps", "-q", service).stdout.split()

    def containers(self) -> list[dict[str, Any]]:
        """`docker compose ps -a` as dicts (JSON lines, or one array in older versions)."""
        out = self("ps", "-a", "--format", "json").stdout.strip()
        if out.startswith("["):
            return list(json.loads(out))
        return [json.loads(line) for line in out.splitlines() if line.strip()]

    def result_counts(self) -> dict[tuple[str, str], int]:
        done = self("exec", "-T", "sink", "python3", "-c", COUNT_RESULTS, timeout=60)
        return {(consumer, stream): n for consumer, stream, n in json.loads(done.stdout)}

    def consumer_names(self, service: str) -> list[str]:
        """Name prefixes of the service's consumers: the default name is HOSTNAME-PID and a
        container's hostname is its id's first 12 characters."""
        return [f"{cid[:12]}-" for cid in self.container_ids(service)]

    def diagnostics(self) -> str:
        ps = self("ps", "-a", check=False, timeout=60).stdout
        logs = self("logs", "--no-color", "--tail", "30", check=False, timeout=60).stdout
        return f"{ps}\n{logs}"


def count_for(counts: dict[tuple[str, str], int], prefix: str, stream: str | None = None) -> int:
    return sum(n for (c, s), n in counts.items() if c.startswith(prefix) and stream in (None, s))


@pytest.fixture(scope="module")
def compose() -> Iterator[Compose]:
    what = docker_missing()
    require(what is None, f"{what} (../shared/tools/docker-setup.sh starts one)")
    c = Compose()
    try:
        c.timed("build", "build")
        c.timed("up", "up", "-d", "--wait", "--wait-timeout", "180")
        yield c
    except BaseException:
        print(c.diagnostics())
        raise
    finally:
        c("down", "-v", "--remove-orphans", "--timeout", "20", check=False, timeout=120)
        print(f"compose timings: {', '.join(f'{k} {v:.1f}s' for k, v in c.timings.items())}")


def test_compose_file_has_the_services_this_test_checks():
    assert {"broker", "sink"} <= set(DEFAULT)
    assert len(PRODUCERS) >= 2 and len(STREAMS) == len(PRODUCERS)
    assert {"stats", "motion", "faces"} <= set(CONSUMERS)


def test_every_service_is_healthy_and_every_stream_is_listed_on_the_published_port(compose):
    states = {c["Service"]: c["Health"] for c in compose.containers()}
    assert states == dict.fromkeys(DEFAULT, "healthy")
    for name, service in DEFAULT.items():  # the image's own HEALTHCHECK finds each role
        role = service["command"][0]
        assert compose("exec", "-T", name, "framebroker-healthcheck").stdout == f"{role}: ok\n"

    def listed():
        streams = {s["stream"]: s for s in compose.streams()}
        live = {name for name, s in streams.items() if s["state"] == "live" and s["frames"]}
        return streams if live >= STREAMS else None

    streams = wait_until(listed, timeout=60, interval=1)
    sample = streams[PRODUCERS["sample"]["environment"]["FRAMEBROKER_STREAM"]]
    assert sample["shape"] == [240, 320, 3]  # the video generated in the image


def test_frames_reach_every_consumer_and_results_accumulate_in_the_sink(compose):
    prefixes = {service: compose.consumer_names(service)[0] for service in CONSUMERS}

    def every_consumer_on_every_stream():
        counts = compose.result_counts()
        ok = all(count_for(counts, p, s) > 0 for p in prefixes.values() for s in STREAMS)
        return counts if ok else None

    first = wait_until(every_consumer_on_every_stream, timeout=90, interval=2)
    wait_until(
        lambda: all(
            count_for(compose.result_counts(), p) > count_for(first, p) for p in prefixes.values()
        ),
        timeout=60,
        interval=2,
    )
    done = compose("exec", "-T", "sink", "framebroker", "results", "--json", "--limit", "5")
    rows = [json.loads(line) for line in done.stdout.splitlines()]
    assert len(rows) == 5
    assert {"consumer", "stream", "seq", "age_ns", "result"} <= set(rows[0])
    assert {r["stream"] for r in rows} <= STREAMS


def test_work_group_replicas_share_the_frames(compose):
    """The `detect` service's replicas form one work group: each frame goes to one of them."""
    (service,) = [n for n, s in CONSUMERS.items() if "FRAMEBROKER_GROUP" in s["environment"]]
    prefixes = compose.consumer_names(service)
    assert len(prefixes) == SERVICES[service]["deploy"]["replicas"] >= 2

    def every_replica_worked():
        counts = compose.result_counts()
        return all(count_for(counts, p) >= 3 for p in prefixes)

    wait_until(every_replica_worked, timeout=90, interval=2)
    done = compose("exec", "-T", "sink", "python3", "-c", GROUP_REPEATS, *prefixes, timeout=60)
    assert json.loads(done.stdout) == [], "a frame was processed by two workers of the group"


def test_a_consumer_outside_attaches_through_the_published_ports(compose, tmp_path):
    name = f"outside-{secrets.token_hex(3)}"
    cli = CliProcesses(tmp_path)
    try:
        proc = cli.start(
            "consume",
            "motion",
            "--streams",
            "demo/",
            "--name",
            name,
            "--publish",
            compose.endpoint("PUBLISH"),
            "--results",
            compose.endpoint("RESULTS"),
            "--acked-results",
            compose.endpoint("ACKED_RESULTS"),
        )

        def stored_for_every_stream():
            counts = compose.result_counts()
            return all(counts.get((name, s), 0) >= 3 for s in STREAMS)

        wait_until(stored_for_every_stream, timeout=60, interval=2)
        assert cli.stop(proc) == 0, cli.output(proc)
    finally:
        cli.stop_all()


def test_a_consumer_service_scales_to_three_replicas(compose):
    before = set(compose.container_ids("stats"))
    compose.timed("scale", "up", "-d", "--wait", "--wait-timeout", "120", "--scale", "stats=3")
    ids = compose.container_ids("stats")
    assert len(ids) == 3 and before <= set(ids)
    prefixes = compose.consumer_names("stats")

    def three_names_with_results():
        counts = compose.result_counts()
        names = {c for (c, _), n in counts.items() for p in prefixes if c.startswith(p) and n}
        return names if len(names) == 3 else None

    names = wait_until(three_names_with_results, timeout=90, interval=2)
    assert len({name.split("-")[0] for name in names}) == 3  # one per container


def test_own_camera_joins_with_its_url_from_the_environment(compose):
    """The `camera` profile's service, as docs/deployment.md has users start it with
    CAMERA_URL; a test pattern stands in for the RTSP URL (the source is passed through as
    it is)."""
    camera = {"CAMERA_URL": "test:320x240@5", "CAMERA_STREAM": "demo/own-camera"}
    compose.env.update(camera, COMPOSE_PROFILES="camera")  # later commands include it
    compose.timed("camera", "up", "-d", "--wait", "--wait-timeout", "120", "camera")

    def listed():
        streams = {s["stream"]: s for s in compose.streams()}
        own = streams.get(camera["CAMERA_STREAM"], {})
        return own if own.get("state") == "live" else None

    assert wait_until(listed, timeout=60, interval=1)["shape"] == [240, 320, 3]


def test_every_service_stops_on_sigterm_with_exit_code_0(compose):
    compose.timed("stop", "stop", "--timeout", "30", timeout=120)
    exits = Counter((c["Service"], c["State"], c["ExitCode"]) for c in compose.containers())
    assert {state for _, state, _ in exits} == {"exited"}, exits
    assert {code for _, _, code in exits} == {0}, exits
