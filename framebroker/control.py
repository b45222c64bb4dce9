"""A client for a control port: the broker's (streams, stats, groups, ping; of one broker
or a set) or the sink's (stats, ping)."""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

import zmq

from framebroker import control_protocol
from framebroker.brokerset import EndpointSet
from framebroker.errors import ProtocolError, TransportError
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity
from framebroker.transport import connect, make_socket


def request(
    endpoint: str,
    op: str,
    *,
    timeout: float = 2.0,
    security: ClientSecurity = PLAINTEXT_CLIENT,
    server: str = "broker",
    **args: Any,
) -> dict[str, Any]:
    """Send one control request and return the reply map.

    ``server``: "broker" or "sink", whose CURVE key ``security`` uses and the errors name.
    Raises TransportError when the server does not answer within ``timeout`` seconds and
    ProtocolError when it answers with garbage; an error reply comes back with ok=False.
    ``security``: CURVE keys when the broker runs CURVE (it never answers a client it
    rejected, so a mismatch shows as no reply).
    """
    ctx: zmq.Context[Any] = zmq.Context.instance()
    sock = make_socket(ctx, zmq.REQ, linger_ms=0, heartbeat_ms=None)
    try:
        security.secure(sock, server)
        # A REQ socket's send waits for a connected peer: after a refused handshake (a
        # CURVE mismatch) there may never be one, so the send is bounded by the timeout too.
        sock.setsockopt(zmq.SNDTIMEO, int(timeout * 1000))
        connect(sock, endpoint)
        try:
            sock.send(control_protocol.encode_request(op, **args))
            answered = sock.poll(int(timeout * 1000))
        except zmq.Again:
            answered = False
        if not answered:
            hint = (
                f"does its allow-list have our CURVE key, and is --curve-{server}-key its key?"
                if security.curve
                else f"if it runs CURVE, give --curve-key and --curve-{server}-key"
            )
            raise TransportError(
                f"no reply from {server} control port {endpoint} "
                f"within {timeout:g}s (is the {server} running? {hint})"
            )
        return control_protocol.decode_reply(sock.recv())
    finally:
        sock.close(linger=0)


@dataclass(frozen=True)
class Answer:
    """One broker's answer to a request sent to a whole set: a reply map, or why none."""

    endpoint: str
    reply: dict[str, Any] | None
    error: str | None = None

    @property
    def up(self) -> bool:
        return self.reply is not None


def request_all(
    endpoints: str,
    op: str,
    *,
    timeout: float = 2.0,
    security: ClientSecurity = PLAINTEXT_CLIENT,
    **args: Any,
) -> list[Answer]:
    """Send ``op`` to every broker of the endpoint list ``endpoints`` (names resolved, as
    :class:`framebroker.brokerset.EndpointSet` does), all at once; one Answer per broker,
    in the set's order. A broker that does not answer within ``timeout`` gets an Answer
    with ``reply=None`` and the reason; nothing is raised for it."""
    members = EndpointSet(endpoints, every=0)
    members.resolve()

    def ask(endpoint: str) -> Answer:
        try:
            return Answer(
                endpoint, request(endpoint, op, timeout=timeout, security=security, **args)
            )
        except (TransportError, ProtocolError) as exc:
            return Answer(endpoint, None, str(exc))

    targets = members.members()
    with ThreadPoolExecutor(max_workers=min(16, len(targets))) as pool:
        return list(pool.map(ask, targets))
