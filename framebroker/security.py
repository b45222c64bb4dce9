"""CURVE security (CurveZMQ) for every socket framebroker binds or connects.

A service is either all CURVE or all plaintext, decided by its configuration:

- :class:`ServerSecurity` (broker, sink): the service's own key pair and an allow-list
  directory of client public keys. With them, every socket the service binds is a CURVE
  server and a ZAP handler admits only clients whose key is in the allow-list (re-read
  when files are added or removed there) or is the service's own key.
- :class:`ClientSecurity` (producers, consumers, CLI tools): the client's own key pair and
  the public key of each server it connects to (``broker``, ``sink``).

:class:`ServerGuard` is what a server service owns at run time (one per service and
ZeroMQ context)::

    guard = ServerGuard(config.security, "broker")
    guard.start(ctx)                  # the ZAP handler: before any bind
    guard.secure(sock, "publish")     # options + a monitor of failed handshakes; then bind
    guard.announce({"publish": endpoint})  # states the mode; warns on open plaintext binds
    guard.poll()                      # in the service's loop: count and log rejections
    guard.close()                     # before the context is terminated

A client without a key, with an unknown key or with a wrong server key never completes
the ZMTP handshake, so nothing it sends is received and nothing is sent to it. libzmq
reports each such handshake on a socket monitor; the guard counts them by socket and by
reason and logs them (rate-limited). When a service already monitors a socket (libzmq
allows one monitor per socket), it adds :data:`FAILURE_EVENTS` to its own monitor and
hands events to :meth:`ServerGuard.observe` (``secure(..., monitor=False)``).
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

import zmq
from zmq.auth.thread import ThreadAuthenticator
from zmq.utils.monitor import parse_monitor_message

from framebroker.errors import ConfigError, TransportError
from framebroker.keys import AllowList, KeyPair, load_allow_list, load_key_pair, load_public_key
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.security")

Socket = zmq.Socket[Any]

FAILURE_EVENTS = (
    zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL
    | zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL
    | zmq.EVENT_HANDSHAKE_FAILED_AUTH
)
SERVERS = ("broker", "sink")
_MONITOR_BATCH = 64


def _check_curve_support() -> None:
    if not zmq.has("curve"):
        raise ConfigError("this libzmq was built without CURVE support (zmq.has('curve'))")


@dataclass(frozen=True)
class ServerSecurity:
    """A server's security: CURVE when ``key`` (its key pair, ``NAME.key_secret``) and
    ``allow`` (a directory of client ``*.key`` files) are given, plaintext when neither."""

    key: str | None = None
    allow: str | None = None
    keypair: KeyPair | None = field(default=None, init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        if (self.key is None) != (self.allow is None):
            missing = "--curve-allow DIR" if self.allow is None else "--curve-key FILE"
            raise ConfigError(
                f"CURVE is all or nothing: a server needs both --curve-key and "
                f"--curve-allow; {missing} is missing"
            )
        if self.key is None or self.allow is None:
            return
        _check_curve_support()
        object.__setattr__(self, "keypair", load_key_pair(self.key))
        load_allow_list(self.allow)  # fail now, not at the first client

    @property
    def curve(self) -> bool:
        return self.keypair is not None


PLAINTEXT_SERVER = ServerSecurity()


@dataclass(frozen=True)
class ClientSecurity:
    """A client's security: CURVE when ``key`` (its key pair) is given, with the public
    key (file or Z85 text) of each server it talks to: ``broker_key``, ``sink_key``."""

    key: str | None = None
    broker_key: str | None = None
    sink_key: str | None = None
    keypair: KeyPair | None = field(default=None, init=False, repr=False, compare=False)
    server_keys: Mapping[str, bytes] = field(
        default_factory=dict, init=False, repr=False, compare=False
    )

    def __post_init__(self) -> None:
        given = {s: getattr(self, f"{s}_key") for s in SERVERS if getattr(self, f"{s}_key")}
        if self.key is None:
            if given:
                flags = ", ".join(f"--curve-{s}-key" for s in given)
                raise ConfigError(f"{flags} given without --curve-key (this client's key pair)")
            return
        _check_curve_support()
        object.__setattr__(self, "keypair", load_key_pair(self.key))
        keys = {server: load_public_key(value) for server, value in given.items()}
        object.__setattr__(self, "server_keys", keys)

    @property
    def curve(self) -> bool:
        return self.keypair is not None

    def require(self, *servers: str) -> ClientSecurity:
        """Check that a CURVE client has the public key of each server it talks to."""
        missing = [s for s in servers if self.curve and s not in self.server_keys]
        if missing:
            flags = " and ".join(f"--curve-{s}-key" for s in missing)
            raise ConfigError(
                f"CURVE is all or nothing: with --curve-key this client also needs {flags} "
                "(the server's public key, NAME.key)"
            )
        return self

    def secure(self, sock: Socket, server: str) -> None:
        """Make ``sock`` a CURVE client of ``server`` (before connect); no-op in plaintext."""
        if self.keypair is None:
            return
        self.require(server)
        try:
            sock.curve_secretkey = self.keypair.secret
            sock.curve_publickey = self.keypair.public
            sock.curve_serverkey = self.server_keys[server]
        except zmq.ZMQError as exc:
            raise TransportError(f"cannot set CURVE options: {exc}") from exc

    def describe(self, *servers: str) -> str:
        """One line for the startup log."""
        if self.keypair is None:
            return "plaintext (no CURVE: traffic is neither encrypted nor authenticated)"
        known = ", ".join(f"{s} {self.server_keys[s].decode()}" for s in servers)
        return f"CURVE, client key {self.keypair.public.decode()}; server keys: {known}"


PLAINTEXT_CLIENT = ClientSecurity()


def is_loopback(endpoint: str) -> bool:
    """True for endpoints only this machine can reach: ipc://, inproc://, tcp on a
    loopback address or ``localhost``."""
    if not endpoint.startswith("tcp://"):
        return True
    host = endpoint[len("tcp://") :].rsplit(":", 1)[0].strip("[]")
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False  # "*", an interface name or a host name


# --- the server side at run time ------------------------------------------------------


@dataclass
class _Watched:
    name: str
    sock: Socket
    monitor: Socket | None
    refused_open: int = 0  # refused handshakes whose disconnect event is still to come


class ServerGuard:
    """A server service's CURVE at run time: ZAP handler, socket options, rejections."""

    def __init__(self, security: ServerSecurity, service: str) -> None:
        self.security = security
        self.service = service
        self.rejected_by_socket: dict[str, int] = {}
        self.rejected_by_reason: dict[str, int] = {}
        self._watched: dict[str, _Watched] = {}
        self._auth: ThreadAuthenticator | None = None
        self._allow: AllowList | None = None
        self._rlog = RateLimitedLog(log)

    @property
    def rejected(self) -> int:
        """Handshakes rejected since start, on every socket."""
        return sum(self.rejected_by_socket.values())

    def start(self, ctx: zmq.Context[Any]) -> None:
        """Start the ZAP handler (CURVE only). Call before binding: libzmq admits every
        client key while no handler runs."""
        pair = self.security.keypair
        if pair is None or self._auth is not None:
            return
        assert self.security.allow is not None
        self._allow = AllowList(self.security.allow, pair.public, self.service)
        auth = ThreadAuthenticator(ctx, log=logging.getLogger("framebroker.security.zap"))
        try:
            auth.start()
        except (zmq.ZMQError, RuntimeError) as exc:
            raise TransportError(f"{self.service}: cannot start the ZAP handler: {exc}") from exc
        auth.configure_curve_callback(domain="*", credentials_provider=self._allow)
        self._auth = auth

    def secure(self, sock: Socket, name: str, *, monitor: bool = True) -> None:
        """Set ``sock``'s server options (before bind) and watch its handshakes."""
        pair = self.security.keypair
        try:
            if pair is not None:
                if self._auth is None:
                    raise TransportError(f"{self.service}: start() the guard before securing")
                sock.curve_secretkey = pair.secret
                sock.curve_publickey = pair.public
                sock.curve_server = True
            mon = sock.get_monitor_socket(FAILURE_EVENTS) if monitor else None
        except zmq.ZMQError as exc:
            raise TransportError(f"{self.service}: cannot secure the {name} socket: {exc}") from exc
        self._watched[name] = _Watched(name, sock, mon)
        self.rejected_by_socket.setdefault(name, 0)

    def announce(self, endpoints: Mapping[str, str]) -> None:
        """Say which mode the service runs in; warn when plaintext is reachable from the
        network. ``endpoints`` are the configured bind endpoints by socket name."""
        names = ", ".join(endpoints)
        if self.security.keypair is not None and self._allow is not None:
            log.info(
                "%s security: CURVE on %s; server public key %s; %d allowed client key(s) "
                "from %s (and the server's own key)",
                self.service,
                names,
                self.security.keypair.public.decode(),
                len(self._allow.keys),
                self._allow.directory,
            )
            if not self._allow.keys:
                log.warning(
                    "%s: the allow-list %s is empty: every client will be rejected",
                    self.service,
                    self._allow.directory,
                )
            return
        log.info("%s security: plaintext (no CURVE) on %s", self.service, names)
        exposed = [f"{n} {e}" for n, e in endpoints.items() if not is_loopback(e)]
        if exposed:
            log.warning(
                "%s: %s reachable from the network WITHOUT CURVE: anyone who can connect may "
                "read and inject frames and results. Give --curve-key and --curve-allow (see "
                "docs/security.md), or bind to 127.0.0.1",
                self.service,
                ", ".join(exposed),
            )

    def poll(self) -> None:
        """Count and log the handshakes rejected since the last call (never blocks)."""
        for watched in self._watched.values():
            if watched.monitor is None:
                continue
            for _ in range(_MONITOR_BATCH):
                try:
                    raw = watched.monitor.recv_multipart(zmq.NOBLOCK)
                except zmq.Again:
                    break
                self.observe(watched.name, parse_monitor_message(raw))

    def observe(self, name: str, event: Mapping[str, Any]) -> bool:
        """Handle one monitor event of socket ``name``; True if it was a rejection (or the
        disconnect that follows one), which the caller then ignores."""
        watched = self._watched.get(name)
        kind = event.get("event", 0)
        if watched is None:
            return False
        if kind == zmq.EVENT_DISCONNECTED and watched.refused_open:
            watched.refused_open -= 1
            return True
        reason = rejection_reason(kind, int(event.get("value", 0))) if kind & FAILURE_EVENTS else ""
        # Plaintext refuses only CURVE clients; other broken handshakes (port probes) are
        # not an authentication matter there.
        if not reason or not (self.security.curve or reason == "mechanism"):
            return False
        if watched.monitor is None:  # the service's own monitor: it sees disconnects too
            watched.refused_open += 1
        self.rejected_by_socket[name] = self.rejected_by_socket.get(name, 0) + 1
        self.rejected_by_reason[reason] = self.rejected_by_reason.get(reason, 0) + 1
        self._rlog.warning(
            f"rejected:{name}:{reason}",
            "%s: rejected a client on %s: %s",
            self.service,
            name,
            explain(reason, curve=self.security.curve),
        )
        return True

    def close(self) -> None:
        """Stop watching and stop the ZAP handler (before the context is terminated)."""
        for watched in self._watched.values():
            if watched.monitor is not None:
                with contextlib.suppress(zmq.ZMQError):
                    watched.sock.disable_monitor()
                watched.monitor.close(linger=0)
        self._watched.clear()
        auth, self._auth = self._auth, None
        if auth is not None:
            auth.stop()


def rejection_reason(event: int, value: int) -> str:
    """A short label for a failed handshake (monitor event and its value)."""
    if event == zmq.EVENT_HANDSHAKE_FAILED_AUTH:
        return "unknown_key" if value == 400 else f"zap_{value}"
    if event == zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL:
        if value == zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH:
            return "mechanism"
        if value in (zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC, zmq.PROTOCOL_ERROR_ZMTP_KEY_EXCHANGE):
            return "crypto"
        return "protocol"
    return "handshake"


def refusal(event: Mapping[str, Any]) -> tuple[str, bool] | None:
    """For a client's monitor event: (what went wrong, whether libzmq gave up), or None
    when the event is not a failed handshake. libzmq does not reconnect after a refusal
    by the server's ZAP handler or a mechanism mismatch; it does after other failures."""
    kind = event.get("event", 0)
    if not kind & FAILURE_EVENTS:
        return None
    reason = rejection_reason(kind, int(event.get("value", 0)))
    text = {
        "unknown_key": "our CURVE key is not in its allow-list (give it our NAME.key)",
        "mechanism": "one side uses CURVE and the other does not (--curve-* flags)",
    }.get(reason, "the CURVE handshake failed (a wrong --curve-broker-key or --curve-sink-key?)")
    return text, kind != zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL


def explain(reason: str, *, curve: bool) -> str:
    if reason == "mechanism":
        if curve:
            return "it does not use CURVE (a client without --curve-key)"
        return "it uses CURVE but this service runs plaintext (no --curve-key here)"
    return {
        "unknown_key": "its CURVE key is not in the allow-list",
        "crypto": "its CURVE handshake did not decrypt (a wrong --curve-*-key for this server?)",
        "protocol": "it broke the ZMTP handshake",
        "handshake": "it broke off the handshake (a client without CURVE, or not ZeroMQ?)",
    }.get(reason, f"handshake failed ({reason})")
