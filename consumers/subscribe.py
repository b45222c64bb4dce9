"""``framebroker.subscribe(...)``: the pull API's front door, with ``consume``'s flags.

Each parameter is a flag of ``framebroker consume`` under the same name, with the same
default, mapped to the same :class:`~.config.ConsumerConfig` (tests/test_pull_api.py checks
this against the command's own parser), so what a script does with ``subscribe`` is what
the command does with those flags.
"""

from __future__ import annotations

from collections.abc import Iterable

from framebroker.config import (
    PUBLISH_PORT,
    RESULTS_PORT,
    WORK_PORT,
    acked_endpoint,
    broker_endpoints,
    connect_endpoint,
    parse_broker,
)
from framebroker.security import PLAINTEXT_CLIENT, ClientSecurity

from .config import ConsumerConfig, default_name, parse_patterns
from .subscription import Subscription

Patterns = str | Iterable[str]


def subscribe(
    streams: Patterns = "*",
    broker: str = "127.0.0.1",
    *,
    publish: str | None = None,
    results: str | None = None,
    acked_results: str | None = "auto",
    send_results: bool = True,
    work: str | None = None,
    group: str | None = None,
    plain_sub: bool | None = None,
    name: str | None = None,
    fps: float | None = None,
    duration: float | None = None,
    timeout: float | None = None,
    shm: bool = True,
    security: ClientSecurity | None = None,
) -> Subscription:
    """Subscribe to the newest frames of ``streams`` on ``broker``; a started Subscription.

    ``streams``: patterns as ``consume --streams`` takes them: ``"cam1"`` exactly,
    ``"site1/"`` or ``"site1/*"`` a group, ``"*"`` everything; a comma-separated string or
    a list. Iterating yields the newest frame of each matching stream, never an older
    one and never one twice; :meth:`Subscription.latest` takes one with a timeout.

    The other parameters are ``framebroker consume``'s flags, with the same defaults:
    ``broker`` is the host of the broker and the sink, or a broker set (``"b1,b2,b3"`` or
    a name resolving to several addresses: every broker is subscribed to, the sink is
    looked for on the first host); ``publish``, ``work``, ``results``
    override an endpoint (``tcp://HOST:PORT``). Results sent with
    :meth:`Subscription.send_result` go to the sink ACKNOWLEDGED (``acked_results="auto"``:
    the ``results`` port + 2; kept and resent until stored); ``acked_results=None`` (or
    ``"none"``) PUSHes them at most once; ``send_results=False`` connects to no sink.
    ``group``: share the frames with the other workers of that work group, each frame to
    one of them. Frames come by credit (a feed, protocol v1.6: a slow link never holds a
    backlog); ``plain_sub=True`` takes them from a plain SUB instead (None: by credit unless
    ``publish`` is given without ``work``), every frame the path carries and a growing
    backlog when it cannot. ``name``: the consumer name results are stored under (default
    HOST-PID).
    ``fps``: at most this many frames per second per stream. ``duration``: iteration ends
    after that many seconds; ``timeout``: when no frame came for that many seconds.
    ``shm``: read frames from shared memory when their producer writes it on this host
    (a view of the slot, no copy; check ``frame.intact`` if you hold a frame long);
    False: always over the network.
    ``security``: CURVE keys for the broker and the sink (:class:`~framebroker.security.
    ClientSecurity`), plaintext by default. Raises ConfigError for a bad value.
    """
    config = subscription_config(
        streams,
        broker,
        publish=publish,
        results=results,
        acked_results=acked_results,
        send_results=send_results,
        work=work,
        group=group,
        plain_sub=plain_sub,
        name=name,
        fps=fps,
        duration=duration,
        shm=shm,
        security=security,
    )
    subscription = Subscription(config, timeout=timeout)
    subscription.start()
    return subscription


def subscription_config(
    streams: Patterns,
    broker: str,
    *,
    publish: str | None,
    results: str | None,
    acked_results: str | None,
    send_results: bool,
    work: str | None,
    group: str | None,
    plain_sub: bool | None,
    name: str | None,
    fps: float | None,
    duration: float | None,
    security: ClientSecurity | None,
    shm: bool = True,
) -> ConsumerConfig:
    """The ConsumerConfig ``consume`` builds from the same flags (validated there)."""
    sink = connect_endpoint(parse_broker(broker)[0], RESULTS_PORT)  # a set: its first host
    results = (results or sink) if send_results else None
    choice = (acked_results or "none").strip()
    acked: str | None = choice
    if results is None or choice.lower() in ("", "none", "off"):
        acked = None
    elif choice.lower() == "auto":
        acked = acked_endpoint(results)
    return ConsumerConfig(
        name=name or default_name(),
        publish=publish or broker_endpoints(broker, PUBLISH_PORT),
        results=results,
        acked_results=acked,
        streams=parse_patterns(streams),
        fps=fps,
        duration=duration,
        group=group or None,
        plain_sub=plain_sub,
        work=work or broker_endpoints(broker, WORK_PORT),
        shm=shm,
        security=security or PLAINTEXT_CLIENT,
    )
