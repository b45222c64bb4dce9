"""ZeroMQ socket helpers: every socket framebroker opens is made here.

Sockets get a finite LINGER (closing never hangs on unsent frames), errors are wrapped in
TransportError with the endpoint in the message, and ``bind`` reports the endpoint it
really bound (so tests and the demo can bind port 0 / ``*`` and learn the port).
"""

from __future__ import annotations

import os
import socket
from typing import Any

import zmq

from framebroker.errors import TransportError

DEFAULT_LINGER_MS = 200
# libzmq applies ZMQ_MAXMSGSIZE to the ZMTP handshake's commands too, and a CURVE client's
# INITIATE is about 300 bytes (measured with libzmq 4.3.5: a limit of 256 refuses every
# CURVE client, 300 admits them): no socket's limit goes below this.
HANDSHAKE_ROOM = 512


def make_socket(
    ctx: zmq.Context[Any],
    kind: int,
    *,
    linger_ms: int = DEFAULT_LINGER_MS,
    sndhwm: int | None = None,
    rcvhwm: int | None = None,
    conflate: bool = False,
    maxmsgsize: int | None = None,
    heartbeat_ms: int | None = 1000,
) -> zmq.Socket[Any]:
    """Create a socket with framebroker's defaults; options must precede bind/connect."""
    try:
        sock = ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, linger_ms)
        if conflate:
            sock.setsockopt(zmq.CONFLATE, 1)
        if sndhwm is not None:
            sock.setsockopt(zmq.SNDHWM, sndhwm)
        if rcvhwm is not None:
            sock.setsockopt(zmq.RCVHWM, rcvhwm)
        if maxmsgsize is not None:
            sock.setsockopt(zmq.MAXMSGSIZE, max(maxmsgsize, HANDSHAKE_ROOM))
        if heartbeat_ms:
            sock.setsockopt(zmq.HEARTBEAT_IVL, heartbeat_ms)
            sock.setsockopt(zmq.HEARTBEAT_TIMEOUT, heartbeat_ms * 3)
            sock.setsockopt(zmq.HEARTBEAT_TTL, heartbeat_ms * 3)
        sock.setsockopt(zmq.RECONNECT_IVL, 100)
        sock.setsockopt(zmq.RECONNECT_IVL_MAX, 2000)
    except zmq.ZMQError as exc:
        raise TransportError(f"cannot create socket: {exc}") from exc
    return sock


def bind(sock: zmq.Socket[Any], endpoint: str) -> str:
    """Bind and return the real endpoint (port filled in when ``:0`` or ``:*`` was asked).

    For ``ipc://PATH`` it first makes sure no live process listens on PATH: libzmq would
    silently take the path over (there is no "address in use" for Unix sockets); a
    socket file left behind by a process that exited is reused.
    """
    wanted = endpoint[:-2] + ":*" if endpoint.endswith(":0") else endpoint
    if endpoint.startswith("ipc://"):
        _check_ipc_free(endpoint)
    try:
        sock.bind(wanted)
    except zmq.ZMQError as exc:
        raise TransportError(f"cannot bind {endpoint}: {exc.strerror}") from exc
    real = sock.getsockopt_string(zmq.LAST_ENDPOINT)
    return real.replace("0.0.0.0", "127.0.0.1") if wanted != endpoint else real


def _check_ipc_free(endpoint: str) -> None:
    path = endpoint[len("ipc://") :]
    if path.startswith("@") or not hasattr(socket, "AF_UNIX") or not os.path.exists(path):
        return  # abstract namespace (Linux) or nothing there yet
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.settimeout(1.0)
        probe.connect(path)
    except OSError:
        return  # a stale socket file (nobody accepts) or not a socket: libzmq decides
    finally:
        probe.close()
    raise TransportError(f"cannot bind {endpoint}: another process is listening there")


def connect(sock: zmq.Socket[Any], endpoint: str) -> None:
    try:
        sock.connect(endpoint)
    except zmq.ZMQError as exc:
        raise TransportError(f"cannot connect to {endpoint}: {exc.strerror}") from exc


def port_of(endpoint: str) -> int:
    """The TCP port of ``tcp://host:port``."""
    try:
        return int(endpoint.rsplit(":", 1)[1])
    except (IndexError, ValueError):
        raise TransportError(f"endpoint has no TCP port: {endpoint!r}") from None
