"""The C and JavaScript example clients against the real broker, producer and sink.

Each client is built from examples/ (the C one into a temporary directory; the JS one's
npm packages are installed once into a cache directory outside the repository, keyed by
package-lock.json) and then:

- passes every conformance vector in tests/vectors/;
- subscribes through a real broker to a test-pattern stream (one JPEG, one raw), decodes
  N frames with increasing seq, checks each payload, and PUSHes one result per frame to a
  real sink, whose SQLite file then holds exactly those results under the client's
  consumer name and the stream;
- lists the broker's streams with a control request;
- (JS) subscribes to a broker set of two and follows its stream across a kill -9.

A missing compiler, libzmq/msgpack-c headers, node or npm skips on a user's machine and
fails in CI (tests/conftest.py ``require``).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
import shutil
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from framebroker.config import work_endpoint
from framebroker.control import request
from framebroker.errors import TransportError
from framebroker.placement import owner
from tests.conftest import ROOT, CliProcesses, free_port, query_db, require, wait_until

N = 20  # frames each client decodes per stream
VECTORS = ROOT / "tests" / "vectors"
C_DIR = ROOT / "examples" / "c"
JS_DIR = ROOT / "examples" / "js"
STREAMS = {"jpeg": "clients/jpeg", "raw": "clients/raw"}
CLIENT_TIMEOUT_S = 30


# --- building the clients ---------------------------------------------------------------


@pytest.fixture(scope="module")
def c_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """examples/c built with its Makefile into a temporary directory."""
    for tool in ("cc", "make", "pkg-config"):
        require(shutil.which(tool) is not None, f"{tool} (apt packages gcc make pkg-config)")
    found = subprocess.run(["pkg-config", "--exists", "libzmq", "msgpack"], check=False)
    require(found.returncode == 0, "libzmq3-dev and libmsgpack-dev (pkg-config libzmq msgpack)")
    binary = tmp_path_factory.mktemp("c-client") / "fbclient"
    build = subprocess.run(
        ["make", "-C", str(C_DIR), f"OUT={binary}"],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert build.returncode == 0, build.stdout + build.stderr
    assert "warning" not in build.stderr, build.stderr
    return [str(binary)]


def _js_cache() -> Path:
    lock = (JS_DIR / "package.json").read_bytes() + (JS_DIR / "package-lock.json").read_bytes()
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "framebroker-tests" / f"js-{hashlib.sha256(lock).hexdigest()[:16]}"


@pytest.fixture(scope="module")
def js_client(tmp_path_factory: pytest.TempPathFactory) -> list[str]:
    """examples/js with its locked npm packages (installed once, cached outside the repo)."""
    node, npm = shutil.which("node"), shutil.which("npm")
    require(node is not None and npm is not None, "node and npm")
    assert node is not None and npm is not None
    cache = _js_cache()
    if not (cache / "node_modules" / ".framebroker-complete").exists():
        staging = cache.with_name(f"{cache.name}.tmp-{os.getpid()}")
        shutil.rmtree(staging, ignore_errors=True)
        staging.mkdir(parents=True)
        for name in ("package.json", "package-lock.json"):
            shutil.copy(JS_DIR / name, staging / name)
        install = subprocess.run(
            [npm, "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=staging,
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        require(install.returncode == 0, f"npm ci of examples/js to work:\n{install.stderr}")
        (staging / "node_modules" / ".framebroker-complete").touch()
        shutil.rmtree(cache, ignore_errors=True)
        try:
            staging.rename(cache)
        except OSError:  # another run installed it meanwhile
            shutil.rmtree(staging, ignore_errors=True)
    # The sources as they are now, next to a link to the cached packages.
    run_dir = tmp_path_factory.mktemp("js-client")
    for source in JS_DIR.iterdir():
        if source.suffix in (".mjs", ".json"):
            shutil.copy(source, run_dir / source.name)
    (run_dir / "node_modules").symlink_to(cache / "node_modules", target_is_directory=True)
    return [node, str(run_dir / "fbclient.mjs")]


@pytest.fixture(params=["c", "js"])
def client(request: pytest.FixtureRequest) -> tuple[str, list[str]]:
    """(name, command prefix) of each client in turn."""
    return request.param, request.getfixturevalue(f"{request.param}_client")


def run(command: list[str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*command, *args], capture_output=True, text=True, timeout=CLIENT_TIMEOUT_S, check=False
    )


# --- a real broker, sink and two test-pattern producers ----------------------------------


@dataclass(frozen=True)
class Cluster:
    publish: str
    results: str
    control: str
    db: Path


@pytest.fixture(scope="module")
def cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Cluster]:
    tmp = tmp_path_factory.mktemp("cluster")
    procs = CliProcesses(tmp)
    ingest, publish, results, control = (f"tcp://127.0.0.1:{free_port()}" for _ in range(4))
    db = tmp / "results.sqlite"
    try:
        procs.start("broker", "--ingest", ingest, "--publish", publish, "--control", control)
        procs.start("sink", "--results", results, "--db", str(db))
        procs.start("produce", "test:160x120@30", "--stream", STREAMS["jpeg"], "--ingest", ingest)
        procs.start(
            "produce",
            "test:64x48@30",
            "--stream",
            STREAMS["raw"],
            "--encoding",
            "raw",
            "--ingest",
            ingest,
        )

        def both_streams_live() -> bool:
            """the broker lists both test streams as live"""
            try:
                reply = request(control, "streams", timeout=0.5)
            except TransportError:
                return False
            live = {s["stream"] for s in reply["streams"] if s["state"] == "live"}
            return live >= set(STREAMS.values())

        wait_until(both_streams_live, timeout=30)
        yield Cluster(publish, results, control, db)
    finally:
        procs.stop_all()


def stored_results(db: Path, consumer: str) -> list[tuple[str, int, int, dict[str, object]]]:
    rows = query_db(
        db,
        "SELECT stream, session, seq, result FROM results WHERE consumer = ? ORDER BY id",
        consumer,
    )
    return [(stream, session, seq, json.loads(result)) for stream, session, seq, result in rows]


# --- the tests ------------------------------------------------------------------------------


def test_client_passes_the_vectors(client):
    _, command = client
    checked = run(command, "vectors", str(VECTORS))
    total = len(list(VECTORS.glob("*.bin")))
    assert checked.returncode == 0, checked.stdout + checked.stderr
    assert f"vectors: {total} passed, 0 failed" in checked.stdout
    assert total > 100


@pytest.mark.parametrize("encoding", ["jpeg", "raw"])
def test_client_decodes_frames_and_sends_results(client, cluster, encoding):
    name, command = client
    stream, consumer = STREAMS[encoding], f"{name}-client-{encoding}"
    # the JS client subscribes as a feed (by credit, v1.6); the C one as a plain SUB
    work = ["--work", work_endpoint(cluster.control)] if name == "js" else []
    sent_before = request(cluster.control, "stats")["feed_sent"]
    sub = run(
        command,
        "subscribe",
        "--stream",
        stream,
        "--publish",
        cluster.publish,
        *work,
        "--results",
        cluster.results,
        "--name",
        consumer,
        "--count",
        str(N),
        "--timeout",
        "15",
    )
    feed_sent = request(cluster.control, "stats")["feed_sent"] - sent_before
    assert sub.returncode == 0, sub.stdout + sub.stderr
    assert f"{N} frames decoded, 0 malformed" in sub.stderr, sub.stderr
    assert (feed_sent >= N) if name == "js" else (feed_sent == 0), feed_sent
    frames = [json.loads(line) for line in sub.stdout.splitlines()]
    assert len(frames) == N, sub.stdout
    assert {f["stream"] for f in frames} == {stream}
    assert {f["encoding"] for f in frames} == {encoding}
    assert {f["payload_check"] for f in frames} == {"ok"}
    assert len({f["session"] for f in frames}) == 1
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)), f"seq not increasing: {seqs}"
    if encoding == "raw":
        assert {f["payload_bytes"] for f in frames} == {48 * 64 * 3}
        assert {tuple(f["shape"]) for f in frames} == {(48, 64, 3)}
    else:
        assert {tuple(f["shape"]) for f in frames} == {(120, 160, 3)}

    def all_results_stored():
        """the sink stored one result per decoded frame"""
        return len(stored_results(cluster.db, consumer)) >= N

    wait_until(all_results_stored, timeout=10)
    rows = stored_results(cluster.db, consumer)
    assert [(r[0], r[1], r[2]) for r in rows] == [(stream, f["session"], f["seq"]) for f in frames]
    for (_, _, _, result), f in zip(rows, frames, strict=True):
        assert result == {
            "client": name,
            "payload_bytes": f["payload_bytes"],
            "payload_check": "ok",
            "shape": f["shape"],
        }


def test_client_lists_streams(client, cluster):
    _, command = client
    listed = run(command, "streams", "--control", cluster.control, "--json")
    assert listed.returncode == 0, listed.stdout + listed.stderr
    reply = json.loads(listed.stdout)
    assert reply["ok"] is True and reply["v"] == [1, 0]
    by_name = {s["stream"]: s for s in reply["streams"]}
    assert set(STREAMS.values()) <= set(by_name)
    for encoding, stream in STREAMS.items():
        entry = by_name[stream]
        assert entry["state"] == "live" and entry["encoding"] == encoding
        assert entry["frames"] > 0 and entry["pixfmt"] == "bgr24"
    table = run(command, "streams", "--control", cluster.control)
    assert table.returncode == 0, table.stderr
    listed_names = {line.split()[0] for line in table.stdout.splitlines()[1:]}
    assert set(STREAMS.values()) <= listed_names


def test_client_reports_a_missing_broker(client):
    _, command = client
    nobody = f"tcp://127.0.0.1:{free_port()}"
    listed = run(command, "streams", "--control", nobody, "--timeout", "0.5")
    assert listed.returncode == 1
    assert "no reply" in listed.stderr


def test_worker_shares_a_stream_with_a_python_worker(client, cluster, tmp_path):
    """A C or JavaScript worker joins a work group (protocol v1.2) beside a Python one."""
    name, command = client
    stream, group = STREAMS["jpeg"], f"mixed-{name}"
    work = work_endpoint(cluster.control)
    procs = CliProcesses(tmp_path)
    try:
        procs.start(
            *("consume", "stats", "--group", group, "--streams", stream, "--name", f"py-{name}"),
            *("--work", work, "--results", cluster.results, "--publish", cluster.publish),
        )
        worker = run(
            command,
            *("work", "--group", group, "--stream", stream, "--name", f"{name}-worker"),
            *("--work", work, "--results", cluster.results, "--count", str(N), "--timeout", "15"),
        )
        groups = request(cluster.control, "groups")["groups"]
        stats = request(cluster.control, "stats")
    finally:
        procs.stop_all()
    assert worker.returncode == 0, worker.stdout + worker.stderr
    assert f"{N} frames decoded, 0 malformed, 0 duplicates" in worker.stderr, worker.stderr
    frames = [json.loads(line) for line in worker.stdout.splitlines()]
    seqs = [f["seq"] for f in frames]
    assert len(frames) == N and seqs == sorted(set(seqs)), seqs
    # the C/JS worker has left (it says `leave` when done); the Python one is still there
    assert [(g["group"], [w["name"] for w in g["workers"]]) for g in groups] == [
        (group, [f"py-{name}"])
    ]
    assert stats["workers_joined"] >= 2 and stats["workers_left"] >= 1

    def all_results_stored():
        """the sink stored the C/JS worker's results"""
        return len(stored_results(cluster.db, f"{name}-worker")) >= N

    wait_until(all_results_stored, timeout=10)
    theirs = {(r[0], r[1], r[2]) for r in stored_results(cluster.db, f"{name}-worker")}
    py = {(r[0], r[1], r[2]) for r in stored_results(cluster.db, f"py-{name}")}
    assert py, "the Python worker processed nothing"
    both = theirs & py
    assert not both, f"frames processed by both workers of one group: {sorted(both)}"


def test_js_client_subscribes_to_a_broker_set_across_a_kill_9(js_client, tmp_path):
    """A feed of every broker of a set (one DEALER each, v1.6; a plain SUB connects to all,
    v1.3, examples/js/brokerset.mjs).

    Two brokers on their own loopback addresses (default ports); the stream's producer is
    given the set and publishes to the stream's owner. Halfway through, the owner is killed
    with -9: the producer moves to the other broker and the JS client, connected to both,
    keeps decoding the same session in seq order and sending results, with nothing restarted.
    """
    net = f"127.15.{secrets.randbelow(250) + 1}"
    hosts = [f"{net}.1", f"{net}.2"]
    stream = "clients/set-raw"
    home = str(owner(stream, [f"{h}:5555" for h in hosts])).rsplit(":", 1)[0]
    other = next(h for h in hosts if h != home)
    results, db = f"tcp://127.0.0.1:{free_port()}", tmp_path / "results.sqlite"
    procs = CliProcesses(tmp_path)
    sub: subprocess.Popen[str] | None = None
    try:
        brokers = {h: procs.start("broker", *_default_ports(h)) for h in hosts}
        procs.start("sink", "--results", results, "--db", str(db))
        procs.start(
            *("produce", "test:64x48@30", "--stream", stream, "--encoding", "raw"),
            *("--broker", ",".join(hosts)),
        )
        wait_until(lambda: stream in _live(home), timeout=30)
        sub = subprocess.Popen(
            [
                *(*js_client, "subscribe", "--stream", stream, "--broker", ",".join(hosts)),
                *("--results", results, "--name", "js-set", "--count", str(2 * N)),
                *("--timeout", "15"),
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert sub.stdout is not None
        frames = [json.loads(sub.stdout.readline()) for _ in range(N)]
        assert stream not in _live(other)  # placement: only its owner has it
        os.kill(brokers[home].pid, signal.SIGKILL)
        brokers[home].wait(10)
        out, err = sub.communicate(timeout=CLIENT_TIMEOUT_S)
        frames += [json.loads(line) for line in out.splitlines()]
        assert stream in _live(other)  # the stream moved to the survivor
    finally:
        if sub is not None and sub.poll() is None:
            sub.kill()
            sub.wait(10)
        procs.stop_all()
    assert sub.returncode == 0, err
    assert f"{2 * N} frames decoded, 0 malformed" in err, err
    assert len({f["session"] for f in frames}) == 1  # the producer was not restarted
    seqs = [f["seq"] for f in frames]
    assert seqs == sorted(set(seqs)), f"seq not increasing across the move: {seqs}"
    wait_until(lambda: len(stored_results(db, "js-set")) >= 2 * N, timeout=10)


def _default_ports(host: str) -> list[str]:
    ports = {"ingest": 5555, "publish": 5556, "control": 5558, "work": 5560}
    return [f"--{name}=tcp://{host}:{port}" for name, port in ports.items()]


def _live(host: str) -> set[str]:
    try:
        reply = request(f"tcp://{host}:5558", "streams", timeout=0.5)
    except TransportError:
        return set()
    return {s["stream"] for s in reply["streams"] if s["state"] == "live"}
