#!/usr/bin/env python3
"""The image's HEALTHCHECK: ask the running service whether it does its job.

    framebroker-healthcheck [ROLE]      # ROLE defaults to the container's own command

- broker:  its control port answers a ``streams`` request (``framebroker streams`` does
           the same);
- sink:    its results port is listening and its database (SQLite or PostgreSQL) has the
           results table;
- produce: the broker lists this producer's stream (FRAMEBROKER_STREAM) as live, i.e. frames
           from the camera arrive there; without a stream name: connected to the ingest port;
- consume: connected to the broker's publish port, or with FRAMEBROKER_GROUP to its work
           port (and to the sink, unless results are off).

Configured by the same FRAMEBROKER_* variables as the service, CURVE keys included (a
broker is asked with its own key pair, which it admits). Exit 0 healthy, 1 not.
"""

from __future__ import annotations

import os
import sqlite3
import sys
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

ROLES = ("broker", "sink", "produce", "consume", "demo")
PORTS = {"ingest": 5555, "publish": 5556, "results": 5557, "control": 5558, "work": 5560}
_LISTEN, _ESTABLISHED = "0A", "01"


def env(flag: str, default: str | None = None) -> str | None:
    return os.environ.get("FRAMEBROKER_" + flag.upper().replace("-", "_"), default)


def container_role() -> str:
    """The framebroker command PID 1 runs (directly, or under `init: true`)."""
    args = Path("/proc/1/cmdline").read_bytes().decode().split("\0")
    return next((a for a in args if a in ROLES), "")


def endpoint(name: str) -> tuple[str, int]:
    """(host, port) a client uses for ``name``: FRAMEBROKER_<NAME> or --broker's host."""
    explicit = env(name)
    if explicit:
        parts = urlsplit(explicit)
        return parts.hostname or "127.0.0.1", parts.port or PORTS[name]
    return env("broker", "127.0.0.1") or "127.0.0.1", PORTS[name]


def acked_port() -> int:
    """The port a consumer sends results to: the acknowledged results port (the results
    port + 2 unless FRAMEBROKER_ACKED_RESULTS says otherwise), or with ``none`` the results
    port itself (plain PUSH)."""
    acked = (env("acked_results", "auto") or "auto").strip().lower()
    if acked in ("", "none", "off"):
        return endpoint("results")[1]
    if acked != "auto":
        return urlsplit(acked).port or endpoint("results")[1] + 2
    return endpoint("results")[1] + 2


def tcp_sockets(state: str) -> set[int]:
    """Ports of this container's TCP sockets in ``state``: local ports when listening,
    remote ports when established."""
    ports = set()
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        try:
            lines = Path(table).read_text().splitlines()[1:]
        except OSError:
            continue
        for line in lines:
            fields = line.split()
            if fields[3] != state:
                continue
            address = fields[1] if state == _LISTEN else fields[2]
            ports.add(int(address.rsplit(":", 1)[1], 16))
    return ports


def curve() -> dict[str, Any]:
    """The CURVE keys of this container's service as a client of the broker: its own key
    pair, and the broker's public key (a broker's own, taken from its key pair)."""
    from framebroker.security import ClientSecurity

    key = env("curve_key")
    if not key:
        return {}
    return {"security": ClientSecurity(key=key, broker_key=env("curve_broker_key") or key)}


def check_broker() -> str | None:
    from framebroker.control import request

    port = urlsplit(env("control") or f"tcp://*:{PORTS['control']}").port
    reply = request(f"tcp://127.0.0.1:{port}", "streams", timeout=2.0, **curve())
    return None if reply.get("ok") else f"broker error: {reply.get('error')}"


def check_sink() -> str | None:
    port = urlsplit(env("results") or f"tcp://*:{PORTS['results']}").port
    if port not in tcp_sockets(_LISTEN):
        return f"nothing listens on results port {port}"
    db = env("db", "framebroker-results.sqlite") or ""
    if db.startswith(("postgresql://", "postgres://")):
        from framebroker.sink.store import open_reader

        open_reader(db, timeout=2.0).close()  # StoreError: unreachable, or no table yet
        return None
    with sqlite3.connect(f"file:{db}?mode=ro", uri=True, timeout=2) as conn:
        conn.execute("SELECT count(*) FROM results WHERE id < 0").fetchall()
    conn.close()
    return None


def check_produce() -> str | None:
    stream = env("stream")
    if not stream:
        port = endpoint("ingest")[1]
        return None if port in tcp_sockets(_ESTABLISHED) else f"not connected to :{port}"
    from framebroker.config import connect_endpoint
    from framebroker.control import request

    host = urlsplit(env("control") or "").hostname or endpoint("ingest")[0]
    endpoint_ = connect_endpoint(host, endpoint("control")[1])
    reply = request(endpoint_, "streams", timeout=2.0, **curve())
    states = {s.get("stream"): s.get("state") for s in reply.get("streams", [])}
    if states.get(stream) != "live":
        return f"the broker lists stream {stream!r} as {states.get(stream, 'unknown')}"
    return None


def check_consume() -> str | None:
    needed = [endpoint("work" if env("group") else "publish")[1]]
    if (env("send_results", "true") or "").strip().lower() not in ("0", "false", "no", "off"):
        needed.append(acked_port())
    missing = [p for p in needed if p not in tcp_sockets(_ESTABLISHED)]
    return f"not connected to port(s) {missing}" if missing else None


CHECKS = {
    "broker": check_broker,
    "sink": check_sink,
    "produce": check_produce,
    "consume": check_consume,
    "demo": lambda: None,
}


def main(argv: list[str]) -> int:
    role = argv[0] if argv else container_role()
    if role not in CHECKS:
        print(f"framebroker-healthcheck: unknown role {role!r}", file=sys.stderr)
        return 1
    try:
        problem = CHECKS[role]()
    except Exception as exc:  # any failure to ask is "unhealthy", with the reason
        problem = f"{type(exc).__name__}: {exc}"
    print(f"{role}: {problem or 'ok'}")
    return 1 if problem else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
