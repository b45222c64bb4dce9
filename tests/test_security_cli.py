"""The secure command set as users run it: keys made by `framebroker keys generate`, then a
broker, a sink, a test-pattern producer and a consumer, all CURVE, configured by
FRAMEBROKER_CURVE_* variables as compose does; intruders get nothing in and nothing out."""

from __future__ import annotations

import json
import os
import shutil
import stat
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port, query_db, wait_until
from tests.test_demo import demo_process, finish, free_port_base  # noqa: F401 (a fixture)
from tests.test_faults_sink import results_port


def framebroker(*args: str, env: dict[str, str] | None = None, timeout: float = 30):
    return subprocess.run(
        [sys.executable, "-m", "framebroker", *args],
        capture_output=True,
        text=True,
        timeout=timeout,
        cwd=ROOT,
        env={**os.environ, **(env or {})},
    )


def test_keys_generate_writes_certificates_with_safe_modes(tmp_path):
    done = framebroker("keys", "generate", str(tmp_path / "k" / "broker"), str(tmp_path / "cam"))
    assert done.returncode == 0, done.stderr
    secret = tmp_path / "k" / "broker.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    assert stat.S_IMODE((tmp_path / "k" / "broker.key").stat().st_mode) == 0o644
    assert "public key" in done.stdout and "broker.key_secret" in done.stdout
    again = framebroker("keys", "generate", str(tmp_path / "cam"))
    assert again.returncode == 2 and "already exists" in again.stderr
    kept = framebroker("keys", "generate", "--keep", str(tmp_path / "cam"))
    assert kept.returncode == 0 and kept.stdout.startswith("kept")
    shown = framebroker("keys", "show", str(tmp_path / "k" / "broker.key"), str(secret))
    lines = shown.stdout.splitlines()
    assert len(lines) == 2 and lines[0].split(": ")[1] == lines[1].split(": ")[1]
    assert (
        "secret-key" in secret.read_text()
        and "secret-key" not in (tmp_path / "k" / "broker.key").read_text()
    )


def test_half_a_curve_configuration_is_a_usage_error(tmp_path):
    assert framebroker("keys", "generate", str(tmp_path / "b")).returncode == 0
    done = framebroker("broker", "--curve-key", str(tmp_path / "b.key_secret"))
    assert done.returncode == 2 and "--curve-allow DIR is missing" in done.stderr
    done = framebroker(
        "consume", "stats", env={"FRAMEBROKER_CURVE_KEY": str(tmp_path / "b.key_secret")}
    )
    assert done.returncode == 2 and "--curve-broker-key" in done.stderr


class Setup:
    """Keys as docs/security.md makes them, and the allow-lists."""

    def __init__(self, root: Path) -> None:
        self.root = root
        names = ["broker", "sink", "stranger"] + [
            f"clients/{n}" for n in ("cam", "worker", "admin", "rogue")
        ]
        done = framebroker("keys", "generate", *(str(root / n) for n in names))
        assert done.returncode == 0, done.stderr
        # the broker admits every client; the sink only the worker (not "rogue")
        for allow, clients in (("broker-allow", names[3:]), ("sink-allow", ["clients/worker"])):
            (root / allow).mkdir()
            for client in clients:
                shutil.copy(root / f"{client}.key", root / allow)

    def server_env(self, name: str) -> dict[str, str]:
        return {
            "FRAMEBROKER_CURVE_KEY": str(self.root / f"{name}.key_secret"),
            "FRAMEBROKER_CURVE_ALLOW": str(self.root / f"{name}-allow"),
        }

    def client_env(self, name: str) -> dict[str, str]:
        key = self.root / "clients" / f"{name}.key_secret"
        return {
            "FRAMEBROKER_CURVE_KEY": str(key if key.exists() else self.root / f"{name}.key_secret"),
            "FRAMEBROKER_CURVE_BROKER_KEY": str(self.root / "broker.key"),
            "FRAMEBROKER_CURVE_SINK_KEY": str(self.root / "sink.key"),
        }


def stored(db: Path, sql: str) -> list[tuple]:
    return query_db(db, sql)


@pytest.mark.slow
def test_the_whole_pipeline_runs_with_curve_and_refuses_unknown_clients(cli, tmp_path):
    keys = Setup(tmp_path / "keys")
    ports = {n: free_port() for n in ("ingest", "publish", "control")}
    ep = {n: f"tcp://127.0.0.1:{p}" for n, p in ports.items()}
    ep["results"] = f"tcp://127.0.0.1:{results_port()}"
    db = tmp_path / "results.sqlite"
    broker_args = [f"--{n}={ep[n]}" for n in ("ingest", "publish", "control")]
    broker = cli.start("broker", *broker_args, "--log-stats=0", env=keys.server_env("broker"))
    sink = cli.start(
        "sink", "--results", ep["results"], "--db", str(db), env=keys.server_env("sink")
    )
    to_broker = ("--ingest", ep["ingest"])
    cli.start(
        "produce", "test:160x120@15", "--stream", "sec/cam", *to_broker, env=keys.client_env("cam")
    )
    cli.start(
        "produce", "test:160x120@15", "--stream", "sec/intruder", *to_broker,
        env=keys.client_env("stranger"),
    )  # fmt: skip
    plain = cli.start("produce", "test:160x120@15", "--stream", "sec/plain", *to_broker)
    consumer_args = ("--publish", ep["publish"], "--results", ep["results"], "--streams", "sec/")
    cli.start("consume", "stats", "--name", "worker", *consumer_args, env=keys.client_env("worker"))
    # admitted by the broker, not by the sink: it gets frames, its results are refused
    rogue = cli.start(
        "consume", "stats", "--name", "rogue", "--print", *consumer_args,
        env=keys.client_env("rogue"),
    )  # fmt: skip
    # no key at all: gets no frame, so it prints nothing
    nokey = cli.start("consume", "stats", "--name", "nokey", "--print", *consumer_args)

    def worker_results_stored():
        return len(stored(db, "SELECT id FROM results WHERE consumer = 'worker'")) >= 10

    wait_until(worker_results_stored, timeout=60)
    wait_until(lambda: '"consumer":"rogue"' in cli.output(rogue), timeout=30)

    admin = keys.client_env("admin")
    streams = framebroker("streams", "--json", "--stats", "--control", ep["control"], env=admin)
    assert streams.returncode == 0, streams.stderr
    reply = json.loads(streams.stdout)
    assert [s["stream"] for s in reply["streams"]["streams"]] == ["sec/cam"]

    for env in ({}, keys.client_env("stranger")):  # no key, unknown key: no answer
        refused = framebroker("streams", "--control", ep["control"], "--timeout", "1", env=env)
        assert refused.returncode == 1 and "no reply from broker" in refused.stderr

    def rejections_counted():
        r = framebroker("streams", "--json", "--stats", "--control", ep["control"], env=admin)
        by_socket = json.loads(r.stdout)["stats"]["auth_rejected_by_socket"]
        return by_socket["ingest"] >= 2 and by_socket["publish"] >= 1 and by_socket["control"] >= 2

    wait_until(rejections_counted, timeout=20)
    consumers = {row[0] for row in stored(db, "SELECT DISTINCT consumer FROM results")}
    streams_stored = {row[0] for row in stored(db, "SELECT DISTINCT stream FROM results")}
    assert consumers == {"worker"} and streams_stored == {"sec/cam"}
    assert '"consumer":"nokey"' not in cli.output(nokey), "a consumer without a key got a frame"

    for proc in reversed(cli.procs):
        assert cli.stop(proc) == 0
    broker_log, sink_log = cli.output(broker), cli.output(sink)
    assert "broker security: CURVE on ingest, publish, control" in broker_log
    assert "WITHOUT CURVE" not in broker_log
    assert "broker: rejected a client on ingest" in broker_log
    assert "broker: rejected a client on control" in broker_log
    assert "is not in the allow-list" in broker_log
    assert "sink: rejected a client on acked_results: its CURVE key is not" in sink_log
    assert "security: plaintext" in cli.output(plain)
    assert "security: CURVE, client key" in cli.output(rogue)


@pytest.mark.slow
def test_a_plaintext_broker_bound_to_the_network_warns(cli):
    ports = [free_port() for _ in range(3)]
    names = ("ingest", "publish", "control")
    args = [f"--{n}=tcp://*:{p}" for n, p in zip(names, ports, strict=True)]
    broker = cli.start("broker", *args)
    wait_until(lambda: "WITHOUT CURVE" in cli.output(broker), timeout=20)
    assert cli.stop(broker) == 0
    text = cli.output(broker)
    assert "broker security: plaintext (no CURVE)" in text
    assert f"ingest tcp://*:{ports[0]}" in text and "--curve-key and --curve-allow" in text


@pytest.mark.slow
def test_the_image_healthcheck_asks_a_curve_broker_with_the_service_keys(cli, tmp_path):
    from tests.test_compose import healthcheck

    keys = Setup(tmp_path / "keys")
    ep = {n: f"tcp://127.0.0.1:{free_port()}" for n in ("ingest", "publish", "control")}
    cli.start(
        "broker", *(f"--{n}={ep[n]}" for n in ep), env=keys.server_env("broker")
    )  # fmt: skip
    broker_env = {"FRAMEBROKER_CONTROL": ep["control"], **keys.server_env("broker")}
    wait_until(lambda: healthcheck("broker", broker_env).returncode == 0, timeout=30)
    plain = healthcheck("broker", {"FRAMEBROKER_CONTROL": ep["control"]})
    assert plain.returncode == 1 and "no reply" in plain.stdout
    producer = {"FRAMEBROKER_STREAM": "hc/cam", "FRAMEBROKER_CONTROL": ep["control"]}
    producer |= keys.client_env("cam")
    cli.start(
        "produce", "test:160x120@10", "--stream", "hc/cam", "--ingest", ep["ingest"], env=producer
    )
    wait_until(lambda: healthcheck("produce", producer).returncode == 0, timeout=30)


@pytest.mark.slow
def test_demo_runs_the_pipeline_with_curve(tmp_path, demo_process):  # noqa: F811
    base = free_port_base()
    db = tmp_path / "demo.sqlite"
    proc = demo_process(
        "--curve", "--duration", "8", "--port-base", str(base), "--db", str(db),
        "--log-dir", str(tmp_path), "--producers", "1", "--consumers", "1",
    )  # fmt: skip
    code, output = finish(proc)
    assert code == 0, output
    assert "demo: CURVE on every connection" in output
    assert "demo/cam1" in output[output.index("framebroker demo summary") :]
    assert stored(db, "SELECT DISTINCT stream FROM results") == [("demo/cam1",)]
    logs = {p.name: p.read_text() for p in tmp_path.glob("*.log")}
    broker_log = next(text for name, text in logs.items() if "broker" in name)
    assert "broker security: CURVE on ingest, publish, control" in broker_log
    assert "rejected" not in broker_log
    secret = tmp_path / "keys" / "broker.key_secret"
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
