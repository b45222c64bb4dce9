"""deploy/swarm/stack.yaml on a real Docker Swarm: `docker swarm init`, `docker stack deploy`.

The stack runs a broker, two sinks on the PostgreSQL service, two cameras and a work group.
The test waits for results in PostgreSQL, scales the work group with `docker service
scale`, kills one sink container and the broker container (Swarm starts new ones), checks
that results keep arriving from both streams, then scales the group to 0 (its workers stop
cleanly, waiting for their last acknowledgements) and checks that every result the workers
printed is stored exactly once. It removes the stack, and leaves the swarm if it made it.
"""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator

import pytest

from tests.conftest import ROOT, require, wait_until
from tests.test_compose_up import docker_missing

pytestmark = [pytest.mark.docker, pytest.mark.slow, pytest.mark.timeout(600)]

STACK = "fbswarm"
STACK_FILE = ROOT / "deploy" / "swarm" / "stack.yaml"


def docker(*args: str, check: bool = True, timeout: float = 300) -> str:
    done = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if check and done.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {done.stdout}{done.stderr}")
    return done.stdout


def containers(service: str, *, running: bool = True) -> list[str]:
    filters = ["--filter", f"label=com.docker.swarm.service.name={STACK}_{service}"]
    return docker("ps", "-q", *([] if running else ["-a"]), *filters).split()


def psql(sql: str) -> list[list[str]]:
    """Rows of ``sql`` asked inside the PostgreSQL container (none while it is not up)."""
    ids = containers("postgres")
    if not ids:
        return []
    out = subprocess.run(
        [
            "docker",
            "exec",
            ids[0],
            "psql",
            "-U",
            "framebroker",
            "-d",
            "framebroker",
            "-At",
            "-F",
            "\t",
            "-c",
            sql,
        ],
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    if out.returncode != 0:
        return []
    return [line.split("\t") for line in out.stdout.splitlines() if line]


def stored() -> int:
    rows = psql("SELECT count(*) FROM results")
    return int(rows[0][0]) if rows else 0


@pytest.fixture
def swarm() -> Iterator[None]:
    missing = docker_missing()
    require(missing is None, missing or "")
    for image, context in (
        ("framebroker:local", ROOT),
        ("framebroker-postgres:local", STACK_FILE.parent / "postgres"),
    ):
        docker("build", "-q", "-t", image, str(context), timeout=900)
    state = docker("info", "--format", "{{.Swarm.LocalNodeState}}").strip()
    made = state != "active"
    if made:
        docker("swarm", "init", "--advertise-addr", "127.0.0.1")
    try:
        yield
    finally:
        docker("stack", "rm", STACK, check=False)
        wait_until(
            lambda: (
                not containers("sink", running=False) and not containers("postgres", running=False)
            ),
            timeout=120,
        )
        docker("volume", "rm", f"{STACK}_pgdata", check=False)
        if made:
            docker("swarm", "leave", "--force", check=False)


def test_stack_survives_a_killed_sink_and_broker_and_stores_every_result_once(swarm):
    docker("stack", "deploy", "-c", str(STACK_FILE), STACK)
    wait_until(lambda: stored() >= 20, timeout=240, what="results in PostgreSQL")
    docker("service", "scale", f"{STACK}_detectors=3", timeout=180)
    wait_until(lambda: len(containers("detectors")) == 3, timeout=60)

    sink = containers("sink")
    assert len(sink) == 2
    docker("kill", sink[0])  # SIGKILL: its unacknowledged results go to the other sink
    (broker,) = containers("broker")
    docker("kill", broker)  # Swarm starts another; the clients reconnect to it
    before = stored()
    wait_until(lambda: stored() >= before + 60, timeout=180, what="results after the kills")
    wait_until(lambda: len(containers("sink")) == 2, timeout=120, what="the sink replaced")
    since = psql("SELECT stream, count(*) FROM results GROUP BY stream")
    assert {row[0] for row in since} == {"swarm/pattern", "swarm/lobby"}

    docker("service", "scale", f"{STACK}_detectors=0", timeout=180)
    wait_until(lambda: not containers("detectors"), timeout=120)
    printed: list[tuple[str, str, int, int]] = []
    for container in containers("detectors", running=False):
        for line in docker("logs", container).splitlines():
            if line.startswith("{"):
                r = json.loads(line)
                printed.append((r["consumer"], r["stream"], r["session"], r["seq"]))
    keys = {
        (c, s, int(se), int(q))
        for c, s, se, q in psql("SELECT consumer, stream, session, seq FROM results")
    }
    assert len(printed) >= 100
    assert len(set(printed)) == len(printed)
    assert set(printed) <= keys  # every result a worker made is stored (once: the unique key)
    print(f"\n{len(printed)} results made by the workers, {len(keys)} rows stored")
