"""The library as a user gets it: ``pip install`` into a fresh virtual environment, then
the examples (``examples/publish.py`` -> broker -> ``examples/pull.py``) on its python.

Nothing of this checkout is on that python's path: the sources are copied (as
tests/test_layout.py's wheel test does) and installed, not editable, from pip's default
index (its download cache makes later runs quick), and every program runs from tmp_path.
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.conftest import ROOT, free_port

SOURCES = ("framebroker", "broker", "producers", "consumers", "sink", "apps")
LINE = re.compile(r"(?P<stream>\S+) seq (?P<seq>\d+) age (?P<age>\d+\.\d) ms")


def clean_env(**extra: str) -> dict[str, str]:
    """This environment without what points into the test's own virtual environment."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}
    return {**env, "PYTHONUNBUFFERED": "1", **extra}


@pytest.fixture
def venv_python(tmp_path: Path) -> Path:
    src = tmp_path / "src"
    for folder in SOURCES:
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    venv = tmp_path / "venv"
    subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True, env=clean_env())
    python = venv / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "--quiet", str(src)],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        timeout=600,
        check=False,
    )
    assert install.returncode == 0, install.stderr[-3000:]
    return python


@pytest.fixture
def processes() -> Iterator[list[subprocess.Popen[str]]]:
    started: list[subprocess.Popen[str]] = []
    try:
        yield started
    finally:
        for proc in started:
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(5)


@pytest.mark.slow
@pytest.mark.timeout(900)
def test_examples_run_on_a_fresh_install(
    venv_python: Path, tmp_path: Path, processes: list[subprocess.Popen[str]]
) -> None:
    where = subprocess.run(
        [str(venv_python), "-c", "import framebroker; print(framebroker.__file__)"],
        capture_output=True,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
        check=True,
    ).stdout.strip()
    assert Path(where).is_relative_to(tmp_path / "venv"), where

    ingest, publish, control, work = (f"tcp://127.0.0.1:{free_port()}" for _ in range(4))
    log = open(tmp_path / "broker.log", "w")  # noqa: SIM115
    broker = subprocess.Popen(
        [
            *(str(venv_python), "-m", "framebroker", "broker", "--ingest", ingest),
            *("--publish", publish, "--control", control, "--work", work),
        ],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(),
        cwd=tmp_path,
    )
    log.close()
    processes.append(broker)
    log = open(tmp_path / "publish.log", "w")  # noqa: SIM115
    publisher = subprocess.Popen(
        [str(venv_python), str(ROOT / "examples" / "publish.py"), "127.0.0.1", "3000"],
        stdout=log,
        stderr=subprocess.STDOUT,
        text=True,
        env=clean_env(FRAMEBROKER_INGEST=ingest),
        cwd=tmp_path,
    )
    log.close()
    processes.append(publisher)
    pulled = subprocess.run(
        [str(venv_python), str(ROOT / "examples" / "pull.py"), "127.0.0.1", "20"],
        capture_output=True,
        text=True,
        env=clean_env(FRAMEBROKER_PUBLISH=publish),
        cwd=tmp_path,
        timeout=120,
        check=False,
    )
    assert pulled.returncode == 0, pulled.stderr + (tmp_path / "broker.log").read_text()
    assert publisher.poll() is None, (tmp_path / "publish.log").read_text()
    lines = pulled.stdout.splitlines()
    assert len(lines) == 20, pulled.stdout
    matches = [LINE.fullmatch(line) for line in lines]
    assert all(matches), lines
    assert {m["stream"] for m in matches if m} == {"example/numpy"}
    seqs = [int(m["seq"]) for m in matches if m]
    assert seqs == sorted(set(seqs))  # the newest each time, never one twice
    assert all(float(m["age"]) >= 0 for m in matches if m)
