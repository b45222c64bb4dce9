"""The processor example (examples/brightness.py, docs/architecture.md) runs as a program
and through the CLI."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT, free_port, query_db, wait_until

EXAMPLE = ROOT / "examples" / "brightness.py"


def test_brightness_example_as_program_and_via_cli(cli, tmp_path):
    ingest, publish, results = free_port(), free_port(), free_port()
    db = tmp_path / "results.sqlite"
    cli.start(
        "broker",
        "--ingest",
        f"tcp://127.0.0.1:{ingest}",
        "--publish",
        f"tcp://127.0.0.1:{publish}",
        "--control",
        f"tcp://127.0.0.1:{free_port()}",
    )
    cli.start("sink", "--results", f"tcp://127.0.0.1:{results}", "--db", str(db))
    cli.start(
        "produce", "test:160x120@15", "--stream", "ex/cam", "--ingest", f"tcp://127.0.0.1:{ingest}"
    )
    endpoints = [
        "--publish",
        f"tcp://127.0.0.1:{publish}",
        "--results",
        f"tcp://127.0.0.1:{results}",
    ]
    via_cli = cli.start(
        "consume", f"{EXAMPLE}:brightness", "--name", "via-cli", "--streams", "ex/", *endpoints
    )
    program = subprocess.run(
        [sys.executable, str(EXAMPLE), "--streams", "ex/cam", "--duration", "3", *endpoints],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert program.returncode == 0, program.stderr

    def consumers_stored():
        rows = query_db(db, "SELECT DISTINCT consumer FROM results")
        return {r[0] for r in rows} == {"brightness", "via-cli"}

    wait_until(consumers_stored, timeout=20)
    assert cli.stop(via_cli) == 0
    sql = "SELECT result FROM results WHERE consumer = ? LIMIT 1"
    ((result,),) = query_db(db, sql, "brightness")
    assert '"mean"' in result and '"dark"' in result
