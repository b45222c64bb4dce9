"""What the numbers were measured on: machine, versions, date, load."""

from __future__ import annotations

import datetime
import os
import platform
import subprocess
from importlib import metadata
from pathlib import Path
from typing import Any

import zmq

from benchmarks.procs import ROOT

PACKAGES = ("pyzmq", "msgpack", "numpy", "opencv-python-headless", "simplejpeg", "imagezmq")


def describe() -> dict[str, Any]:
    return {
        "date": datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%d %H:%M UTC"),
        "cpu": _cpu_model(),
        "cpus": os.cpu_count(),
        "memory_gb": _memory_gb(),
        "os": platform.platform(),
        "python": platform.python_version(),
        "libzmq": zmq.zmq_version(),
        "packages": {name: _version(name) for name in PACKAGES},
        "framebroker": _version("framebroker"),
        "commit": _commit(),
        "load_average": list(os.getloadavg()),
    }


def summary(m: dict[str, Any]) -> str:
    """One paragraph for the docs."""
    pkgs = ", ".join(f"{k} {v}" for k, v in m["packages"].items() if v)
    return (
        f"{m['date']}, commit {m['commit']}; {m['cpus']} x {m['cpu']}, "
        f"{m['memory_gb']:.0f} GB RAM, {m['os']}; Python {m['python']}, libzmq {m['libzmq']}, "
        f"{pkgs}. Load average when the run started: "
        f"{', '.join(f'{x:.2f}' for x in m['load_average'])} (a shared machine)."
    )


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or "unknown CPU"


def _memory_gb() -> float:
    try:
        for line in Path("/proc/meminfo").read_text().splitlines():
            if line.startswith("MemTotal:"):
                return int(line.split()[1]) / 1024 / 1024
    except OSError:
        pass
    return 0.0


def _version(name: str) -> str | None:
    try:
        return metadata.version(name)
    except metadata.PackageNotFoundError:
        return None


def _commit() -> str:
    try:
        out = subprocess.run(
            ["git", "rev-parse", "--short", "HEAD"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
            check=True,
        ).stdout.strip()
        dirty = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=ROOT,
            capture_output=True,
            text=True,
            timeout=5,
        ).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    return out + ("+changes" if dirty else "")
