"""Each role on its own machine: docs/deployment.md's commands on three network namespaces.

Host ``central`` runs the broker and the sink, ``camera`` two producers, ``worker`` two
consumers (a fan-out one and a worker of a work group); they reach the broker by the host
name ``broker`` (each host's own /etc/hosts), never by 127.0.0.1. The commands are read
from the "Running each role on its own machine" section of docs/deployment.md and run
exactly as written there. Then the camera host's link is cut: the broker marks its
streams stale; plugged back in, they resume with nothing restarted.
"""

from __future__ import annotations

import json
import re
import shlex
import socket
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.conftest import ROOT, query_db, require, wait_until
from tests.netns import Network, framebroker, missing

pytestmark = [pytest.mark.netns, pytest.mark.slow, pytest.mark.timeout(240)]

DOC = ROOT / "docs" / "deployment.md"
SECTION = "## Running each role on its own machine"
# the comment that starts a group of commands -> the host that runs them
GROUPS = {
    "on the central machine": "central",
    "on a camera machine": "camera",
    "on a worker machine": "worker",
    "from any machine": "worker",
}
LONG_RUNNING = {"broker", "sink", "produce", "consume"}


def section_commands() -> list[tuple[str, list[str]]]:
    """(host, argv) for every command in the section's shell block, in order."""
    text = DOC.read_text()
    section = text[text.index(SECTION) :]
    block = re.search(r"```sh\n(.*?)```", section, re.S)
    assert block, f"no ```sh block under {SECTION!r}"
    host = None
    commands = []
    for line in block.group(1).splitlines():
        if line.startswith("#"):
            host = next((h for g, h in GROUPS.items() if line.startswith(f"# {g}")), host)
            continue
        argv = shlex.split(line, comments=True)
        if argv:
            assert host, f"command before any '# on ... machine' comment: {line}"
            assert argv[0] == "framebroker", line
            commands.append((host, argv[1:]))
    return commands


def option(argv: list[str], name: str) -> str:
    return argv[argv.index(name) + 1]


def test_the_section_has_every_role_on_its_own_host():
    commands = section_commands()
    roles = {(host, argv[0]) for host, argv in commands}
    assert {("central", "broker"), ("central", "sink"), ("worker", "consume")} <= roles
    assert {("worker", "streams"), ("central", "results")} <= roles
    producers = [argv for host, argv in commands if argv[0] == "produce"]
    assert len(producers) >= 2 and all(h == "camera" for h, a in commands if a[0] == "produce")
    clients = [argv for _, argv in commands if argv[0] not in ("broker", "sink", "results")]
    assert all(option(argv, "--broker") == "broker" for argv in clients)


@pytest.fixture
def network(tmp_path: Path) -> Iterator[Network]:
    what = missing()
    require(what is None, what or "")
    with Network(tmp_path, ["central", "camera", "worker"], {"broker": "central"}) as net:
        yield net


def streams_from(net: Network, host: str) -> dict[str, dict[str, Any]]:
    """`framebroker streams --broker broker --json`, asked from ``host``."""
    done = net[host].run(*framebroker("streams", "--broker", "broker", "--json", "--timeout", "3"))
    if done.returncode != 0:
        return {}
    return {s["stream"]: s for s in json.loads(done.stdout)["streams"]}


def result_counts(db: Path, consumer: str) -> dict[str, int]:
    return dict(
        query_db(
            db, "SELECT stream, count(*) FROM results WHERE consumer = ? GROUP BY stream", consumer
        )
    )


def test_roles_on_separate_hosts_survive_a_cut_link(network):
    net = network
    commands = section_commands()
    procs = []
    for host, argv in commands:
        if argv[0] in LONG_RUNNING:
            procs.append(net[host].start(*framebroker(*argv)))
    streams = {option(argv, "--stream") for _, argv in commands if argv[0] == "produce"}
    # The worker's consumers (one fan-out, one worker of a work group) are named HOST-PID
    # by default (`ip netns exec` execs: same PID).
    consumers = [f"{socket.gethostname()}-{p.pid}" for p in net["worker"].procs]
    assert len(consumers) == 2
    (db_name,) = {option(argv, "--db") for _, argv in commands if argv[0] == "sink"}
    db = net["central"].workdir / db_name

    # Frames flow from the camera host through the broker to the worker; results land.
    def all_streams_live():
        listed = streams_from(net, "worker")
        return listed if all(listed.get(s, {}).get("state") == "live" for s in streams) else None

    wait_until(all_streams_live, timeout=60, interval=0.5)

    def results_for_every_stream():
        counts = [result_counts(db, name) for name in consumers]
        return counts if all(c.get(s, 0) >= 3 for c in counts for s in streams) else None

    wait_until(results_for_every_stream, timeout=60, interval=0.5)
    for host, argv in commands:  # the section's one-shot commands, as written
        if argv[0] not in LONG_RUNNING:
            done = net[host].run(*framebroker(*argv))
            assert done.returncode == 0, done.stderr
            if argv[0] == "streams":
                assert all(s in done.stdout for s in streams), done.stdout
                assert done.stdout.count(" live ") >= len(streams), done.stdout
            if argv[0] == "results":
                assert any(s in done.stdout for s in streams), done.stdout
                assert any(name in done.stdout for name in consumers), done.stdout

    # Unplug the camera host: the broker marks its streams stale, the others keep running.
    before = all_streams_live()
    cut = time.monotonic()
    net["camera"].link(up=False)

    def all_stale():
        listed = streams_from(net, "worker")
        return listed if all(listed.get(s, {}).get("state") == "stale" for s in streams) else None

    stale = wait_until(all_stale, timeout=30, interval=0.5)
    stale_after = time.monotonic() - cut
    assert all(stale[s]["frames"] >= before[s]["frames"] for s in streams)
    results_while_cut = [result_counts(db, name) for name in consumers]

    # Plug it back in: the same processes resume; frame counts grow, results flow again.
    plugged = time.monotonic()
    net["camera"].link(up=True)

    def resumed():
        listed = streams_from(net, "worker")
        ok = all(
            listed.get(s, {}).get("state") == "live" and listed[s]["frames"] > stale[s]["frames"]
            for s in streams
        )
        return listed if ok else None

    wait_until(resumed, timeout=60, interval=0.5)
    resume_after = time.monotonic() - plugged

    def more_results():
        counts = [result_counts(db, name) for name in consumers]
        return all(
            now.get(s, 0) > cut.get(s, 0)
            for now, cut in zip(counts, results_while_cut, strict=True)
            for s in streams
        )

    wait_until(more_results, timeout=60, interval=0.5)
    running = [p for p in procs if p.poll() is None]
    assert running == procs, "a process exited; nothing should need a restart"
    print(f"stale {stale_after:.1f}s after the cut, live {resume_after:.1f}s after the plug")

    for proc in reversed(procs):  # SIGTERM: every command exits 0
        assert net.stop(proc) == 0, net.output(proc)
