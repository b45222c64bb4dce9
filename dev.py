#!/usr/bin/env python3
"""Bootstrap and run: `python3 dev.py demo` or `python3 dev.py test`.

Needs only Python >= 3.11. Creates ./.venv on first use, installs framebroker into it
(editable; with the test tools and the benchmark extras for `test`, the benchmark extras
for `bench`), reinstalls when pyproject.toml changes, then runs:

    demo [ARGS...]   framebroker demo ARGS (a broker, a sink, producers, consumers)
    test [ARGS...]   ruff, mypy and the whole pytest suite (ARGS go to pytest)
    bench [ARGS...]  python -m benchmarks ARGS (--quick: seconds; default: the full run
                     that refreshes docs/benchmarks.md, ~15 minutes)
    shell            print how to activate the environment
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import venv
from pathlib import Path

ROOT = Path(__file__).resolve().parent
VENV = ROOT / ".venv"
BIN = VENV / ("Scripts" if os.name == "nt" else "bin")
PY = BIN / "python"


def ensure_env(extras: str) -> None:
    """Create the virtual environment and install the project when needed."""
    if sys.version_info < (3, 11):  # noqa: UP036 (dev.py may be run by an older python3)
        sys.exit(f"framebroker needs Python 3.11 or newer; this is {sys.version.split()[0]}")
    if not PY.exists():
        print(f"dev.py: creating virtual environment in {VENV}", flush=True)
        venv.EnvBuilder(with_pip=True).create(VENV)
    digest = hashlib.sha256((ROOT / "pyproject.toml").read_bytes()).hexdigest()[:16]
    stamp = VENV / f".installed-{extras or 'base'}-{digest}"
    if stamp.exists():
        return
    print(f"dev.py: installing framebroker{f'[{extras}]' if extras else ''} into .venv", flush=True)
    target = f".[{extras}]" if extras else "."
    run(
        [
            str(PY),
            "-m",
            "pip",
            "install",
            "--quiet",
            "--disable-pip-version-check",
            "--editable",
            target,
        ]
    )
    stamp.touch()


def run(cmd: list[str]) -> None:
    code = subprocess.call(cmd, cwd=ROOT)
    if code != 0:
        sys.exit(code)


def main(argv: list[str]) -> int:
    command, rest = (argv[0], argv[1:]) if argv else ("help", [])
    if command == "demo":
        ensure_env("")
        os.execv(str(BIN / "framebroker"), [str(BIN / "framebroker"), "demo", *rest])
    if command == "bench":
        ensure_env("bench")
        os.chdir(ROOT)
        os.execv(str(PY), [str(PY), "-m", "benchmarks", *rest])
    if command == "test":
        ensure_env("test,bench")
        run([str(PY), "-m", "ruff", "check", "."])
        run([str(PY), "-m", "ruff", "format", "--check", "."])
        run([str(PY), "-m", "mypy"])
        return subprocess.call([str(PY), "-m", "pytest", *rest], cwd=ROOT)
    if command == "shell":
        ensure_env("test,bench")
        print(f"source {BIN / 'activate'}")
        return 0
    print(__doc__)
    return 0 if command == "help" else 2


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
