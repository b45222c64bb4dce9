"""The benchmark suite's quick mode (CI): every scenario runs and reports numbers.

It checks that numbers exist, never what they are: tests do not assert speed.
"""

from __future__ import annotations

import importlib.util
import json
import os
import signal
import subprocess
import sys

import pytest

from benchmarks.cli import SCENARIOS
from tests.conftest import ROOT, require


def numbers(row: list[object]) -> list[float]:
    return [v for v in row if isinstance(v, int | float) and not isinstance(v, bool)]


@pytest.mark.slow
@pytest.mark.timeout(300)
def test_quick_benchmark_reports_every_scenario_with_numbers(tmp_path):
    for module in ("imagezmq", "matplotlib"):
        require(importlib.util.find_spec(module) is not None, f"{module} (the bench extra)")
    docs = ROOT / "docs" / "benchmarks.md"
    docs_before = docs.read_text() if docs.exists() else None
    # Its own process group: if anything hangs, the run and every child it started go.
    proc = subprocess.Popen(
        [sys.executable, "-m", "benchmarks", "--quick", "--out", str(tmp_path)],
        cwd=ROOT,
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
        start_new_session=True,
    )
    try:
        output, _ = proc.communicate(timeout=240)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(10)
    assert proc.returncode == 0, output[-4000:]

    results = json.loads((tmp_path / "results.json").read_text())
    assert results["mode"] == "quick"
    assert results["machine"]["cpus"] and results["machine"]["libzmq"]
    assert set(results["scenarios"]) == set(SCENARIOS)
    for name, scenario in results["scenarios"].items():
        assert "error" not in scenario, (name, scenario.get("error"))
        assert scenario["rows"], name
        for row in scenario["rows"]:
            assert numbers(row), (name, row)
        assert scenario["targets"], name
        for target in scenario["targets"]:
            assert isinstance(target["measured"], int | float), (name, target)
        for plot in scenario["plots"]:
            assert (tmp_path / plot).stat().st_size > 0
        assert scenario["title"] in output  # the table was printed
    freshness = results["scenarios"]["freshness"]["data"]["runs"]
    assert {"ours/1", "imagezmq/1"} <= set(freshness)  # the peer ran side by side
    assert (docs.read_text() if docs.exists() else None) == docs_before  # quick: docs untouched
