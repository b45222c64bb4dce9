"""A throwaway PostgreSQL server: Debian's initdb and pg_ctl, a temp dir, a free port.

For tests and benchmarks of the PostgreSQL store (``--db postgresql://...``)::

    with postgres_server() as pg:
        url = pg.create_database("results")

``initdb`` refuses to run as root, so as root the cluster belongs to the ``postgres``
user (commands run through ``su``); as anyone else, to that user. The server listens on
127.0.0.1 only, trusts local connections (user ``fb``), and is stopped by the PID in
its ``postmaster.pid`` at the end, then its directory removed.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shlex
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

USER = "fb"


def pg_bin() -> Path | None:
    """The newest installed PostgreSQL's bin directory (Debian: /usr/lib/postgresql/N/bin)."""
    found = sorted(
        Path("/usr/lib/postgresql").glob("*/bin/pg_ctl"), key=lambda p: int(p.parent.parent.name)
    )
    return found[-1].parent if found else None


class PostgresServer:
    """One PostgreSQL cluster in a temp dir; ``url(dbname)`` for clients."""

    def __init__(self) -> None:
        bin_dir = pg_bin()
        if bin_dir is None:
            raise RuntimeError("needs Debian's postgresql (apt-get install postgresql)")
        self.bin = bin_dir
        self.port = _free_port()
        self.dir = Path(tempfile.mkdtemp(prefix="fb-pg-"))
        self.data = self.dir / "data"
        self._owner = "postgres" if os.geteuid() == 0 else None
        if self._owner is not None:
            pw = pwd.getpwnam(self._owner)
            os.chown(self.dir, pw.pw_uid, pw.pw_gid)

    def _run(self, *args: str) -> None:
        command = shlex.join(args)
        argv = ["su", self._owner, "-s", "/bin/sh", "-c", command] if self._owner else list(args)
        done = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=False)
        if done.returncode != 0:
            log = self.dir / "log"
            tail = log.read_text()[-2000:] if log.exists() else ""
            raise RuntimeError(f"{command} failed: {done.stdout}{done.stderr}{tail}")

    def init(self) -> None:
        self._run(str(self.bin / "initdb"), "-D", str(self.data), "-A", "trust", "-U", USER)

    def start(self) -> None:
        options = f"-p {self.port} -k {self.dir} -c listen_addresses=127.0.0.1 -c fsync=off"
        log = str(self.dir / "log")
        self._run(
            str(self.bin / "pg_ctl"), "-D", str(self.data), "-o", options, "-l", log, "-w", "start"
        )

    def stop(self, mode: str = "fast") -> None:
        """``fast`` (clean) or ``immediate`` (the kill -9 case: no shutdown checkpoint)."""
        self._run(str(self.bin / "pg_ctl"), "-D", str(self.data), "-m", mode, "-w", "stop")

    def pid(self) -> int | None:
        pidfile = self.data / "postmaster.pid"
        with contextlib.suppress(OSError, ValueError, IndexError):
            return int(pidfile.read_text().split()[0])
        return None

    def url(self, dbname: str = "postgres") -> str:
        return f"postgresql://{USER}@127.0.0.1:{self.port}/{dbname}"

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(self.url(), autocommit=True) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)

    def close(self) -> None:
        """Stop the server (by its PID if pg_ctl cannot) and remove its directory."""
        pid = self.pid()
        if pid is not None:
            with contextlib.suppress(RuntimeError, subprocess.TimeoutExpired):
                self.stop("immediate")
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
                time.sleep(0.2)
        shutil.rmtree(self.dir, ignore_errors=True)


@contextlib.contextmanager
def postgres_server() -> Iterator[PostgresServer]:
    server = PostgresServer()
    try:
        server.init()
        server.start()
        yield server
    finally:
        server.close()


def query(url: str, sql: str, *args: object) -> list[tuple[Any, ...]]:
    """The rows of one statement, on a connection of its own."""
    import psycopg

    with psycopg.connect(url) as conn:
        return list(conn.execute(sql, args or None).fetchall())


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])
