"""``framebroker demo``: the whole pipeline on localhost, with live progress.

Starts a broker, a sink, test-pattern producers and consumers as separate processes
(:mod:`broker.demo_cluster`), shows progress once a second (:mod:`broker.demo_progress`),
and stops everything on Ctrl-C or after ``--duration`` seconds, then prints a summary.
Exit 0 when results were stored; 1 when a child died early or nothing arrived. With
``--curve`` it first makes a CURVE key set in the log directory and runs every process
with it (docs/security.md).
"""

from __future__ import annotations

import argparse
import socket
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TextIO

from framebroker.cli import EXIT_ERROR, EXIT_OK, Command
from framebroker.config import (
    INGEST_PORT,
    add_option,
    parse_bool,
    parse_positive,
)
from framebroker.errors import ConfigError, StoreError, TransportError
from framebroker.keys import generate_key_pair
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.signals import StopOnSignals
from framebroker.sink.store import SQLiteStore

from .cluster import Child, ChildSpec, Cluster
from .progress import LiveView, Sampler, Snapshot, StreamRow, render_summary

PROCESSORS = ("stats", "motion", "qr", "faces")
DEFAULT_DB = "framebroker-demo.sqlite"
_TICK_S = 0.1


@dataclass(frozen=True)
class DemoConfig:
    """What the demo starts, where; validated on construction (ConfigError)."""

    duration: float | None = None  # seconds; None runs until Ctrl-C
    port_base: int = INGEST_PORT  # ingest=base, publish=+1, results=+2, control=+3
    producers: int = 2
    consumers: int = 2
    source: str = "test:640x480@30"
    db: str = DEFAULT_DB
    log_dir: str | None = None  # None: a new temporary directory
    host: str = "127.0.0.1"
    interval: float = 1.0  # seconds between progress updates
    grace: float = 5.0  # seconds a child gets to stop after SIGTERM
    curve: bool = False  # every process with CURVE keys made for the run

    def __post_init__(self) -> None:
        if not 1 <= self.port_base <= 65535 - 3:
            raise ConfigError(f"--port-base must be 1..65532, not {self.port_base}")
        if not 1 <= self.producers <= 32:
            raise ConfigError(f"--producers must be 1..32, not {self.producers}")
        if not 1 <= self.consumers <= 16:
            raise ConfigError(f"--consumers must be 1..16, not {self.consumers}")
        if self.duration is not None and self.duration <= 0:
            raise ConfigError(f"--duration must be positive, not {self.duration}")
        if not self.db:
            raise ConfigError("--db must not be empty")

    @property
    def db_path(self) -> Path:
        return Path(self.db).absolute()

    def port(self, role: str) -> int:
        return self.port_base + ("ingest", "publish", "results", "control").index(role)

    def endpoint(self, role: str) -> str:
        return f"tcp://{self.host}:{self.port(role)}"


@dataclass(frozen=True)
class DemoKeys:
    """``--curve``: key pairs for the broker, the sink and each kind of client; the
    servers admit the clients in ``ROOT/clients``."""

    root: Path

    @classmethod
    def make(cls, root: Path) -> DemoKeys:
        for name in ("broker", "sink", "clients/producer", "clients/consumer", "clients/demo"):
            generate_key_pair(root / name)
        return cls(root)

    def server(self, name: str) -> tuple[str, ...]:
        key = str(self.root / f"{name}.key_secret")
        return ("--curve-key", key, "--curve-allow", str(self.root / "clients"))

    def client(self, name: str, *servers: str) -> tuple[str, ...]:
        args = ["--curve-key", str(self.root / "clients" / f"{name}.key_secret")]
        for server in servers:
            args += [f"--curve-{server}-key", str(self.root / f"{server}.key")]
        return tuple(args)

    def security(self) -> ClientSecurity:
        """The demo's own key, to ask the broker for its streams."""
        key = self.root / "clients" / "demo.key_secret"
        return ClientSecurity(key=str(key), broker_key=str(self.root / "broker.key"))


def child_specs(config: DemoConfig, keys: DemoKeys | None = None) -> list[ChildSpec]:
    """Central services first (they bind), then consumers, then producers."""
    ep = config.endpoint

    def server_keys(name: str) -> tuple[str, ...]:
        return keys.server(name) if keys is not None else ()

    def client_keys(name: str, *servers: str) -> tuple[str, ...]:
        return keys.client(name, *servers) if keys is not None else ()

    specs = [
        ChildSpec(
            "broker",
            (
                "broker",
                "--ingest",
                ep("ingest"),
                "--publish",
                ep("publish"),
                "--control",
                ep("control"),
                *server_keys("broker"),
            ),
        ),
        ChildSpec(
            "sink",
            (
                *("sink", "--results", ep("results"), "--db", str(config.db_path)),
                *server_keys("sink"),
            ),
        ),
    ]
    for i in range(config.consumers):
        processor = PROCESSORS[i % len(PROCESSORS)]
        name = processor if i < len(PROCESSORS) else f"{processor}-{i // len(PROCESSORS) + 1}"
        args = ("consume", processor, "--streams", "demo/", "--name", name)
        specs.append(
            ChildSpec(
                f"consumer {name}",
                (
                    *(*args, "--publish", ep("publish"), "--results", ep("results")),
                    *client_keys("consumer", "broker", "sink"),
                ),
            )
        )
    for i in range(1, config.producers + 1):
        stream = f"demo/cam{i}"
        specs.append(
            ChildSpec(
                f"producer {stream}",
                (
                    *("produce", config.source, "--stream", stream, "--ingest", ep("ingest")),
                    *client_keys("producer", "broker"),
                ),
            )
        )
    return specs


def check_ports_free(config: DemoConfig) -> None:
    """TransportError naming the first of the four demo ports that is already taken."""
    for role in ("ingest", "publish", "results", "control"):
        port = config.port(role)
        with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as probe:
            probe.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
            try:
                probe.bind((config.host, port))
            except OSError as exc:
                raise TransportError(
                    f"port {port} ({role}) on {config.host} is not free: {exc.strerror}; "
                    "is another framebroker running? Pick other ports with --port-base"
                ) from None


def last_id(db: Path) -> int:
    """Rows already in ``db`` from earlier runs (the summary counts only new ones)."""
    if not db.exists():
        return 0
    try:
        store = SQLiteStore.open_existing(db)
    except StoreError:
        return 0  # not ours; the sink will say what is wrong with it
    try:
        return store.last_id()
    finally:
        store.close()


class Demo:
    """One run of the demo: start the cluster, watch it, stop it, summarize."""

    def __init__(self, config: DemoConfig, out: TextIO = sys.stdout) -> None:
        self.config = config
        self.out = out
        self.db = config.db_path
        self._stopping = False

    def stop(self) -> None:
        """Ask run() to stop; safe in a signal handler."""
        self._stopping = True

    def run(self) -> int:
        config = self.config
        check_ports_free(config)
        log_dir = Path(config.log_dir or tempfile.mkdtemp(prefix="framebroker-demo-")).absolute()
        cluster = Cluster(log_dir)
        keys = DemoKeys.make(log_dir / "keys") if config.curve else None
        security = keys.security() if keys is not None else PLAINTEXT_CLIENT
        sampler = Sampler(config.endpoint("control"), self.db, last_id(self.db), security)
        self._say(f"demo: results go to {self.db}; process logs in {log_dir}")
        if keys is not None:
            self._say(f"demo: CURVE on every connection; keys in {keys.root}")
        started = time.monotonic()
        streams: tuple[StreamRow, ...] = ()
        dead: list[Child] = []
        try:
            for spec in child_specs(config, keys):
                child = cluster.start(spec)
                self._say(f"demo: started {child.name} (pid {child.pid})")
            dead, streams = self._watch(cluster, sampler, started)
            if not dead:
                streams = sampler.streams()[0] or streams  # frames per stream at the end
        finally:
            self._say("demo: stopping")
            cluster.stop_all_in_order(_stop_waves(cluster), grace=config.grace)
            for child in cluster.children:
                state = "killed" if child.killed else f"exit code {child.returncode}"
                self._say(f"demo: stopped {child.name} (pid {child.pid}, {state})")
        try:
            summary = sampler.totals(time.monotonic() - started, streams)
        finally:
            sampler.close()
        return self._report(summary, dead, log_dir)

    def _watch(
        self, cluster: Cluster, sampler: Sampler, started: float
    ) -> tuple[list[Child], tuple[StreamRow, ...]]:
        """Show progress until stop(), the duration, or a child's death."""
        view = LiveView(self.out, tty=self.out.isatty())
        deadline = None if self.config.duration is None else started + self.config.duration
        next_sample = started + self.config.interval
        streams: tuple[StreamRow, ...] = ()
        while not self._stopping:
            dead = cluster.exited()
            if dead:
                return dead, streams
            now = time.monotonic()
            if deadline is not None and now >= deadline:
                break
            if now >= next_sample:
                snap = sampler.sample(now - started)
                streams = snap.streams or streams
                view.show(snap)
                next_sample = max(next_sample + self.config.interval, now)
            time.sleep(_TICK_S)
        return [], streams

    def _report(self, summary: Snapshot, dead: list[Child], log_dir: Path) -> int:
        for line in render_summary(summary, self.db):
            self._say(line)
        if dead:
            for child in dead:
                self._say(
                    f"demo: FAILED: {child.name} (pid {child.pid}) exited early with code "
                    f"{child.returncode}; last lines of {child.log_path}:"
                )
                self._say(_indent(child.log_tail()))
            return EXIT_ERROR
        if summary.total_results == 0:
            self._say(f"demo: FAILED: no results arrived; see the process logs in {log_dir}")
            return EXIT_ERROR
        return EXIT_OK

    def _say(self, text: str) -> None:
        self.out.write(text + "\n")
        self.out.flush()


def _stop_waves(cluster: Cluster) -> list[list[Child]]:
    """Producers first, then consumers (their last results still reach the sink), then
    the broker, the sink last."""
    by_kind: dict[str, list[Child]] = {}
    for child in cluster.children:
        by_kind.setdefault(child.spec.args[0], []).append(child)
    return [by_kind.get(kind, []) for kind in ("produce", "consume", "broker", "sink")]


def _indent(text: str) -> str:
    return "\n".join("    " + line for line in text.splitlines())


# --- framebroker demo ---------------------------------------------------------------------


def add_arguments(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--duration",
        default=None,
        type=parse_positive,
        help="stop after this many seconds (default: run until Ctrl-C)",
    )
    add_option(
        parser,
        "--port-base",
        default=INGEST_PORT,
        type=int,
        help="ports used: ingest=BASE, publish=BASE+1, results=BASE+2, control=BASE+3",
    )
    add_option(parser, "--producers", default=2, type=int, help="test-pattern cameras")
    add_option(
        parser, "--consumers", default=2, type=int, help="consumers: stats, motion, qr, faces"
    )
    add_option(parser, "--source", default="test:640x480@30", help="what each producer shows")
    add_option(parser, "--db", default=DEFAULT_DB, help="SQLite file the demo's sink writes")
    add_option(parser, "--log-dir", default=None, help="process logs (default: a temp dir)")
    add_option(
        parser,
        "--curve",
        default=False,
        type=parse_bool,
        help="run every process with CURVE keys made for the run (in the log directory)",
    )


def run(args: argparse.Namespace) -> int:
    config = DemoConfig(
        duration=args.duration,
        port_base=args.port_base,
        producers=args.producers,
        consumers=args.consumers,
        source=args.source,
        db=args.db,
        log_dir=args.log_dir,
        curve=args.curve,
    )
    demo = Demo(config)
    with StopOnSignals(demo.stop, escalate=False) as signals:
        code = demo.run()
    return code or signals.exit_code  # 130 after Ctrl-C, like every other command


DEMO = Command(
    name="demo",
    help="run a broker, a sink, test-pattern producers and consumers on localhost",
    add_arguments=add_arguments,
    run=run,
)
