"""The package layout and the dependency rule, checked on the code itself.

- The wheel installs one top-level name, ``framebroker``.
- Roles (``broker``, ``producers``, ``consumers``, ``sink``) never import each other.
- The core (``framebroker/``) imports no role and no application; its facade
  (``framebroker/__init__.py``) names them only as strings, imported on first use (and
  imports them under ``if TYPE_CHECKING:``, for type checkers only).
- The applications (``apps/viewer``, ``apps/demo``, ``apps/testing``) may use the roles; no
  role and not the core imports them.
- The sink's modules import each other without a cycle.
- The protocol modules (wire, protocol, control_protocol, work_protocol) import neither
  zmq nor cv2.
- ``import framebroker`` and ``framebroker broker`` import neither cv2 nor aiohttp.
"""

from __future__ import annotations

import ast
import json
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

from tests.conftest import ROOT

# folder in the repository -> its package in the one namespace
ROLES = {
    "broker": "framebroker.broker",
    "producers": "framebroker.producers",
    "consumers": "framebroker.consumers",
    "sink": "framebroker.sink",
}
APPS = {
    "apps/viewer": "framebroker.viewer",
    "apps/record": "framebroker.record",
    "apps/demo": "framebroker.demo",
    "apps/testing": "framebroker.testing",
}
PURE = (
    "framebroker/wire.py",
    "framebroker/protocol.py",
    "framebroker/work_protocol.py",
    "framebroker/control_protocol.py",
    "framebroker/capabilities.py",
)


def package_of(path: Path) -> tuple[str, str]:
    """(the top package a file belongs to, its own dotted package)."""
    rel = path.relative_to(ROOT).as_posix()
    for folder, package in {**APPS, **ROLES, "framebroker": "framebroker"}.items():
        if rel.startswith(folder + "/"):
            inner = rel[len(folder) + 1 :].split("/")[:-1]
            return package, ".".join([package, *inner])
    raise AssertionError(f"{rel} is in no package")


def imports_of(path: Path, *, typing_only: bool = True) -> list[tuple[int, str]]:
    """Every module a file imports, as absolute dotted names, with its line."""
    return imports_in(path.read_text(), package_of(path)[1], typing_only=typing_only)


FACADE = "framebroker/__init__.py"


def imports_in(source: str, own: str, *, typing_only: bool = True) -> list[tuple[int, str]]:
    """The imports of ``source``, a module of package ``own``; with ``typing_only=False``
    without those under ``if TYPE_CHECKING:`` (never run)."""
    tree = ast.parse(source)
    if not typing_only:
        for node in ast.walk(tree):
            if isinstance(node, ast.If) and ast.unparse(node.test) == "TYPE_CHECKING":
                node.body = [ast.Pass()]
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = own.split(".")[: len(own.split(".")) - node.level + 1]
                name = ".".join([*base, node.module] if node.module else base)
            else:
                name = node.module or ""
            found.append((node.lineno, name))
    return found


def sources(folder: str) -> list[Path]:
    return sorted((ROOT / folder).rglob("*.py"))


def under(name: str, package: str) -> bool:
    return name == package or name.startswith(package + ".")


def test_every_package_folder_is_mapped_in_pyproject() -> None:
    text = (ROOT / "pyproject.toml").read_text()
    for folder, package in {**ROLES, **APPS}.items():
        assert f'"{package}" = "{folder}"' in text


def test_roles_never_import_each_other_nor_the_applications() -> None:
    wrong = []
    for folder, package in ROLES.items():
        others = [p for p in [*ROLES.values(), *APPS.values()] if p != package]
        for path in sources(folder):
            for line, name in imports_of(path):
                if any(under(name, other) for other in others):
                    wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def test_the_core_imports_no_role_and_no_application() -> None:
    wrong = []
    for path in sources("framebroker"):
        facade = path == ROOT / FACADE  # its TYPE_CHECKING imports never run
        for line, name in imports_of(path, typing_only=not facade):
            if any(under(name, p) for p in [*ROLES.values(), *APPS.values()]):
                wrong.append(f"{path.relative_to(ROOT)}:{line} imports {name}")
    assert not wrong, "\n".join(wrong)


def import_cycles(folder: str) -> list[list[str]]:
    """Cycles among the modules of one folder (imports of the package itself left out)."""
    modules = {package_of(p)[1] + "." + p.stem: p for p in sources(folder)}
    graph = {
        name: {n for _, n in imports_of(path, typing_only=False) if n in modules and n != name}
        for name, path in modules.items()
    }
    cycles: list[list[str]] = []
    done: set[str] = set()

    def visit(name: str, path: list[str]) -> None:
        if name in path:
            cycles.append([*path[path.index(name) :], name])
            return
        if name in done:
            return
        for target in sorted(graph[name]):
            visit(target, [*path, name])
        done.add(name)

    for name in sorted(graph):
        visit(name, [])
    return cycles


def test_the_sink_modules_import_no_cycle() -> None:
    """The stores share sink/base.py and sink/sql.py; SQLite's and PostgreSQL's modules
    never import each other both ways."""
    assert import_cycles("sink") == []


def test_protocol_modules_import_neither_zmq_nor_cv2() -> None:
    for rel in PURE:
        path = ROOT / rel
        names = [name for _, name in imports_of(path)]
        assert not [n for n in names if under(n, "zmq") or under(n, "cv2")], rel


def test_the_rules_above_see_a_violation() -> None:
    """The AST reading resolves relative imports, so a role reaching into another is caught."""
    source = "from ..broker import service\nimport framebroker.producers\nfrom . import store\n"
    names = [name for _, name in imports_in(source, "framebroker.sink")]
    assert names == ["framebroker.broker", "framebroker.producers", "framebroker.sink"]


def test_only_imports_for_type_checkers_are_left_out_of_the_facade_rule() -> None:
    source = (
        "from typing import TYPE_CHECKING\n"
        "if TYPE_CHECKING:\n    from framebroker.broker.service import Broker\n"
        "else:\n    import framebroker.sink\n"
        "import framebroker.producers\n"
    )
    names = {name for _, name in imports_in(source, "framebroker", typing_only=False)}
    assert names == {"typing", "framebroker.sink", "framebroker.producers"}
    everything = [name for _, name in imports_in(source, "framebroker")]
    assert "framebroker.broker.service" in everything


def loaded_modules(code: str) -> set[str]:
    out = subprocess.run(
        [sys.executable, "-c", f"{code}\nimport sys, json\nprint(json.dumps(sorted(sys.modules)))"],
        capture_output=True,
        text=True,
        check=True,
        cwd=ROOT,
    ).stdout
    return set(json.loads(out.splitlines()[-1]))


HEAVY = ("cv2", "aiohttp", "numpy", "rich", "simplejpeg")


def test_import_framebroker_is_light() -> None:
    loaded = loaded_modules("import framebroker")
    assert not [m for m in HEAVY if m in loaded]
    assert not [m for m in loaded if under(m, "framebroker.broker") or under(m, "zmq")]


def test_the_broker_command_loads_only_what_the_broker_needs() -> None:
    loaded = loaded_modules(
        "import contextlib, io\n"
        "from framebroker.cli import main\n"
        "with contextlib.redirect_stdout(io.StringIO()), contextlib.suppress(SystemExit):\n"
        "    main(['broker', '--help'])"
    )
    assert "framebroker.broker.service" in loaded
    assert not [m for m in HEAVY if m in loaded], sorted(m for m in HEAVY if m in loaded)
    for other in ("framebroker.consumers", "framebroker.producers", "framebroker.viewer"):
        assert other not in loaded


@pytest.mark.slow
def test_the_wheel_installs_one_top_level_name(tmp_path: Path) -> None:
    """Build the wheel from a copy of the tracked sources, as pip would for a user."""
    src = tmp_path / "src"
    for folder in ("framebroker", *ROLES, "apps"):
        shutil.copytree(ROOT / folder, src / folder, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("pyproject.toml", "README.md"):
        shutil.copy(ROOT / name, src / name)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "-w",
            str(tmp_path),
            str(src),
        ],
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("framebroker-*.whl")
    names = zipfile.ZipFile(wheel).namelist()
    top = {n.split("/")[0] for n in names if not n.split("/")[0].endswith(".dist-info")}
    assert top == {"framebroker"}
    for module in (
        "framebroker/broker/service.py",
        "framebroker/sink/store.py",
        "framebroker/consumers/processors/motion.py",
        "framebroker/viewer/static/viewer.js",
        "framebroker/demo/cli.py",
        "framebroker/py.typed",
    ):
        assert module in names
    (dist_info,) = {n.split("/")[0] for n in names if n.split("/")[0].endswith(".dist-info")}
    entry_points = zipfile.ZipFile(wheel).read(f"{dist_info}/entry_points.txt").decode()
    assert "framebroker.broker.cli:BROKER" in entry_points
