"""Host sets: several peers named by a list (``a,b,c``) or by one DNS name.

A client of a set of services (sinks here; brokers use the same shape) is given either a
comma-separated list of hosts, each with an optional port, or one DNS name that resolves to
every replica: a Kubernetes headless Service or Docker Swarm's ``tasks.NAME``. Both reduce
to a list of ``tcp://ADDRESS:PORT`` endpoints, one per address.

Such records change as replicas come and go, so an :class:`EndpointSet` resolves again on
demand (:meth:`EndpointSet.refresh`) and says which endpoints appeared and which left; the
caller connects and disconnects its socket accordingly. A host whose lookup fails keeps the
addresses it had (a DNS hiccup must not disconnect a healthy peer); a host never resolved
yet simply contributes nothing until it does (a replica still starting).

Pure apart from the resolver (``socket.getaddrinfo`` by default, replaceable in tests).
"""

from __future__ import annotations

import ipaddress
import socket
from collections.abc import Callable, Sequence
from typing import Any

from .errors import ConfigError

Resolver = Callable[..., Sequence[tuple[Any, ...]]]


def parse_hosts(spec: str) -> tuple[str, ...]:
    """``"a, b:5560,[::1]:5559"`` -> ``("a", "b:5560", "[::1]:5559")``; ConfigError if empty."""
    items = tuple(item.strip() for item in spec.split(",") if item.strip())
    if not items:
        raise ConfigError(f"give at least one host (a,b,c or a DNS name), not {spec!r}")
    for item in items:
        split_host_port(item, 1)  # validates
    return items


def split_host_port(item: str, default_port: int) -> tuple[str, int]:
    """``host``, ``host:port``, ``[v6]:port`` or a bare IPv6 address -> (host, port)."""
    host, port_text = item, ""
    if item.startswith("["):
        host, sep, rest = item[1:].partition("]")
        if not sep or (rest and not rest.startswith(":")):
            raise ConfigError(f"bad host {item!r}: use [IPv6]:PORT")
        port_text = rest[1:]
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    if not host or any(c.isspace() or c in "/@" for c in host):
        raise ConfigError(f"bad host {item!r}")
    if not port_text:
        return host, default_port
    if not port_text.isdigit() or not 0 < int(port_text) < 65536:
        raise ConfigError(f"bad port in {item!r}")
    return host, int(port_text)


def tcp_endpoint(address: str, port: int) -> str:
    """``tcp://ADDRESS:PORT``, IPv6 addresses in brackets."""
    return f"tcp://[{address}]:{port}" if ":" in address else f"tcp://{address}:{port}"


def resolve_host(host: str, port: int, resolver: Resolver = socket.getaddrinfo) -> list[str]:
    """Every endpoint ``host`` names (an address as it is); OSError when the lookup fails."""
    try:
        ipaddress.ip_address(host)
    except ValueError:
        pass
    else:
        return [tcp_endpoint(host, port)]
    found: list[str] = []
    for info in resolver(host, port, type=socket.SOCK_STREAM):
        endpoint = tcp_endpoint(str(info[4][0]), port)
        if endpoint not in found:
            found.append(endpoint)
    return found


class EndpointSet:
    """The endpoints of a host set, resolved again on each :meth:`refresh`."""

    def __init__(
        self, spec: str | Sequence[str], default_port: int, resolver: Resolver = socket.getaddrinfo
    ) -> None:
        items = parse_hosts(spec) if isinstance(spec, str) else tuple(spec)
        self.hosts = tuple(split_host_port(item, default_port) for item in items)
        self.spec = ",".join(items)
        self._resolver = resolver
        self._by_host: dict[tuple[str, int], list[str]] = {}
        self.failures: dict[str, str] = {}  # host -> why its last lookup failed

    @property
    def endpoints(self) -> list[str]:
        """The current endpoints, in the order of the hosts, each once."""
        seen: list[str] = []
        for host in self.hosts:
            seen += [e for e in self._by_host.get(host, []) if e not in seen]
        return seen

    def refresh(self) -> tuple[list[str], list[str]]:
        """Resolve every host again; (endpoints added, endpoints removed) since the last time."""
        before = self.endpoints
        self.failures = {}
        for host, port in self.hosts:
            try:
                self._by_host[(host, port)] = resolve_host(host, port, self._resolver)
            except OSError as exc:  # socket.gaierror included: keep what it resolved to
                self.failures[host] = str(exc)
        after = self.endpoints
        return [e for e in after if e not in before], [e for e in before if e not in after]
