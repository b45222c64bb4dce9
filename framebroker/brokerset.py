"""Broker sets: the list of brokers a client is given, resolved, re-resolved, connected to.

Every client flag that names the broker (``--broker``, the library's ``broker=``) takes one
host, a comma-separated list (``b1,b2,b3``) or a DNS name that resolves to several addresses
(a Kubernetes headless Service, Docker Swarm's ``tasks.broker``). The endpoint flags derived
from it (``--ingest``, ``--publish``, ``--work``, ``--control``) hold the matching
comma-separated list of endpoints (``tcp://b1:5556,tcp://b2:5556``), and so may be given
such a list directly.

:class:`EndpointSet` turns that list into the concrete endpoints of the set: every TCP host
name is resolved (IPv4 addresses; IPv6 only for a name without any), and names are resolved
again every ``RESOLVE_S`` seconds in a thread of their own, so brokers added or removed are
seen without a restart. A name that stops resolving keeps its last addresses (a DNS hiccup
must not empty the set). **A set of one is today's client**: a single endpoint whose host
resolves to at most one address is used exactly as given (libzmq resolves it on each
connect), and nothing is pinged or hashed.

:class:`Connections` is the "connect to all" helper of consumers, workers, the viewer:
one socket connected to every member (libzmq fair-queues what arrives), whose
:meth:`~Connections.sync`, called from the socket's own thread, follows the set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
import socket
import threading
from collections.abc import Callable, Sequence
from typing import Any

import zmq

from framebroker.config import parse_endpoints
from framebroker.transport import connect

log = logging.getLogger("framebroker.brokerset")

RESOLVE_S = 5.0  # how often names are resolved again
Lookup = Callable[..., Sequence[tuple[Any, ...]]]  # socket.getaddrinfo's shape


def member_id(endpoint: str) -> str:
    """``tcp://10.0.0.7:5555`` -> ``10.0.0.7:5555``: the name placement hashes."""
    return endpoint.split("://", 1)[1]


def _split(endpoint: str) -> tuple[str, str] | None:
    """(host, port) of a TCP endpoint with a real port; None for anything else."""
    if not endpoint.startswith("tcp://"):
        return None
    host, port = endpoint[len("tcp://") :].rsplit(":", 1)
    if port in ("*", "0"):
        return None
    return (host[1:-1] if host.startswith("[") else host), port


def _is_address(host: str) -> bool:
    try:
        ipaddress.ip_address(host)
    except ValueError:
        return False
    return True


def _endpoint(address: str, port: str) -> str:
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


def expand(endpoint: str, lookup: Lookup = socket.getaddrinfo) -> tuple[str, ...]:
    """The endpoints ``endpoint``'s host resolves to (itself when it is not a TCP name).

    Raises OSError when the name does not resolve.
    """
    parts = _split(endpoint)
    if parts is None:
        return (endpoint,)
    host, port = parts
    if _is_address(host):
        return (_endpoint(str(ipaddress.ip_address(host)), port),)
    infos = lookup(host, int(port), type=socket.SOCK_STREAM)
    by_family: dict[int, list[str]] = {socket.AF_INET: [], socket.AF_INET6: []}
    for family, *_, sockaddr in infos:
        address = str(sockaddr[0]).split("%", 1)[0]
        if family in by_family and address not in by_family[family]:
            by_family[family].append(address)
    addresses = by_family[socket.AF_INET] or by_family[socket.AF_INET6]
    if not addresses:
        raise OSError(f"{host} has no address")
    return tuple(_endpoint(a, port) for a in sorted(addresses))


class EndpointSet:
    """The concrete endpoints of an endpoint list, re-resolved every ``every`` seconds.

    :meth:`start` resolves at once (so the first connect reaches every member) and, when a
    name needs it, starts the re-resolving thread; :meth:`close` stops it. ``version``
    changes whenever :meth:`members` does.
    """

    def __init__(
        self, spec: str, *, every: float = RESOLVE_S, lookup: Lookup = socket.getaddrinfo
    ) -> None:
        self.spec = spec
        self.given = parse_endpoints(spec)
        self.every = every
        self._lookup = lookup
        self._lock = threading.Lock()
        self._resolved: dict[str, tuple[str, ...]] = {}
        self._members: tuple[str, ...] = self.given
        self.version = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    @property
    def dynamic(self) -> bool:
        """Whether some host is a name (so the set may change when DNS does)."""
        return any(p is not None and not _is_address(p[0]) for p in map(_split, self.given))

    @property
    def single(self) -> bool:
        """A set of one: behave exactly as a client of one broker."""
        return len(self.members()) == 1

    def members(self) -> tuple[str, ...]:
        with self._lock:
            return self._members

    def resolve(self) -> bool:
        """Resolve every name now (blocking); whether the members changed."""
        for endpoint in self.given:
            try:
                found = expand(endpoint, self._lookup)
            except (OSError, UnicodeError) as exc:
                log.warning("cannot resolve %s: %s; keeping what it was", endpoint, exc)
                continue
            self._resolved[endpoint] = found
        union: list[str] = []
        for endpoint in self.given:
            for found_endpoint in self._resolved.get(endpoint, ()):
                if found_endpoint not in union:
                    union.append(found_endpoint)
        members: tuple[str, ...]
        if len(self.given) == 1 and len(union) <= 1:
            members = self.given  # a set of one: as given, exactly as before sets existed
        else:
            members = tuple(sorted(union)) or self.given
        with self._lock:
            if members == self._members:
                return False
            if self.version or members != self.given:
                log.info("broker set %s: %s", self.spec, ", ".join(members))
            self._members = members
            self.version += 1
        return True

    def start(self) -> None:
        """Resolve now; keep resolving in a thread if a name may change (idempotent)."""
        if self._thread is not None:
            return
        self.resolve()
        if self.dynamic and self.every > 0:
            self._thread = threading.Thread(
                target=self._run, name="framebroker-resolve", daemon=True
            )
            self._thread.start()

    def _run(self) -> None:
        while not self._stop.wait(self.every):
            self.resolve()

    def close(self) -> None:
        self._stop.set()
        thread, self._thread = self._thread, None
        if thread is not None and thread is not threading.current_thread():
            thread.join(timeout=5.0)


class Connections:
    """One socket connected to every member of ``endpoints``.

    :meth:`sync` connects new members and disconnects gone ones; call it from the thread
    that uses the socket (ZeroMQ sockets are not thread-safe). Cheap when nothing changed.
    """

    def __init__(self, sock: zmq.Socket[Any], endpoints: EndpointSet) -> None:
        self._sock = sock
        self.endpoints = endpoints
        self.connected: tuple[str, ...] = ()
        self._version = -1

    def sync(self) -> None:
        if self.endpoints.version == self._version:
            return
        self._version = self.endpoints.version
        wanted = self.endpoints.members()
        for endpoint in self.connected:
            if endpoint not in wanted:
                with contextlib.suppress(zmq.ZMQError):
                    self._sock.disconnect(endpoint)
        for endpoint in wanted:
            if endpoint not in self.connected:
                connect(self._sock, endpoint)
        self.connected = wanted


def connect_all(sock: zmq.Socket[Any], spec: str) -> tuple[EndpointSet, Connections]:
    """Connect ``sock`` to every broker of the endpoint list ``spec``; start re-resolving.

    The caller closes the EndpointSet and calls ``Connections.sync()`` now and then.
    """
    endpoints = EndpointSet(spec)
    endpoints.start()
    connections = Connections(sock, endpoints)
    try:
        connections.sync()
    except BaseException:
        endpoints.close()
        raise
    return endpoints, connections
