"""``python -m benchmarks [--quick] [--only NAMES] [--out DIR] [--no-docs]``.

Runs the scenarios one after the other, prints each table as it completes, writes
``results.json`` (and PNG plots) to ``--out`` and, after a full run of every scenario,
refreshes the generated part of ``docs/benchmarks.md``. ``--quick`` (CI) runs small
versions in well under a minute and never touches the docs. ``--only`` runs some
scenarios and merges them into an existing ``results.json`` (each keeps its date).
Exit status: 0 when every scenario produced numbers (missed targets included), 1 when a
scenario failed, 2 on bad arguments.
"""

from __future__ import annotations

import argparse
import importlib
import json
import sys
import time
import traceback
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from benchmarks import docs, machine
from benchmarks.procs import ROOT
from benchmarks.report import Options, Result

SCENARIOS = docs.ORDER  # each has a section in docs/benchmarks.md
DOCS_OUT = ROOT / "docs" / "benchmarks"
QUICK_OUT = ROOT / "build" / "benchmarks-quick"


def make_argument_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m benchmarks",
        description="framebroker against direct PUB->SUB, zmq.proxy and imagezmq: freshness, "
        "throughput, latency, scale, JPEG codec, and work groups against fan-out.",
    )
    parser.add_argument(
        "--quick", action="store_true", help="small sizes for CI (well under a minute)"
    )
    parser.add_argument(
        "--only",
        default=",".join(SCENARIOS),
        help=f"comma-separated scenarios to run (default: all: {','.join(SCENARIOS)})",
    )
    parser.add_argument(
        "--out",
        type=Path,
        default=None,
        help=f"where results.json and the plots go (default: {DOCS_OUT.relative_to(ROOT)}, "
        f"or {QUICK_OUT.relative_to(ROOT)} with --quick)",
    )
    parser.add_argument(
        "--no-docs",
        action="store_true",
        help="do not refresh docs/benchmarks.md after a full run",
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = make_argument_parser()
    args = parser.parse_args(argv)
    names = [n.strip() for n in args.only.split(",") if n.strip()]
    unknown = [n for n in names if n not in SCENARIOS]
    if unknown or not names:
        parser.error(
            f"unknown scenario(s) {', '.join(unknown)}; choose from {', '.join(SCENARIOS)}"
        )
    out: Path = args.out or (QUICK_OUT if args.quick else DOCS_OUT)
    out.mkdir(parents=True, exist_ok=True)
    opts = Options(quick=args.quick, out=out)
    path = out / "results.json"
    results = _load(path) if set(names) != set(SCENARIOS) else {}
    results["mode"] = "quick" if args.quick else "full"
    current = machine.describe()
    if "machine" not in results:  # a partial run keeps the page's machine; entries say theirs
        results["machine"] = current
    scenarios: dict[str, Any] = results.setdefault("scenarios", {})
    failed = False
    for name in names:
        started = time.monotonic()
        print(f"\n--- {name} ...", flush=True)
        try:
            result = _run(name, opts)
        except Exception as exc:  # a broken scenario must not hide the others
            traceback.print_exc()
            scenarios[name] = {"error": f"{type(exc).__name__}: {exc}"}
            failed = True
            continue
        entry = result.to_map()
        entry["seconds"] = round(time.monotonic() - started, 1)
        entry["date"] = current["date"]
        entry["commit"] = current["commit"]
        entry["load_average"] = current["load_average"]
        entry["cpu"] = f"{current['cpus']} x {current['cpu']}"
        scenarios[name] = entry
        print(result.text(), flush=True)
        _targets(result)
        path.write_text(json.dumps(results, indent=1) + "\n")
    if results["machine"] is current:
        results["machine"]["load_average_end"] = machine.describe()["load_average"]
    path.write_text(json.dumps(results, indent=1) + "\n")
    print(f"\nresults: {path}")
    complete = all(n in scenarios and "error" not in scenarios[n] for n in SCENARIOS)
    if not args.quick and not args.no_docs and complete and out == DOCS_OUT:
        docs.refresh(results, ROOT / "docs" / "benchmarks.md", out)
        print(f"docs: {ROOT / 'docs' / 'benchmarks.md'}")
    return 1 if failed else 0


def _run(name: str, opts: Options) -> Result:
    module = importlib.import_module(f"benchmarks.{name}")
    result: Result = module.run(opts)
    return result


def _targets(result: Result) -> None:
    for t in result.targets:
        verdict = {True: "met", False: "MISSED", None: "n/a"}[t.met]
        measured = "-" if t.measured is None else f"{t.measured:.3g}"
        op = "<=" if t.better == "lower" else ">="
        print(f"  target {t.name}: {measured} ({op} {t.limit:g}) {verdict}")


def _load(path: Path) -> dict[str, Any]:
    try:
        loaded: dict[str, Any] = json.loads(path.read_text())
        return loaded
    except (OSError, ValueError):
        return {}


if __name__ == "__main__":
    sys.exit(main())
