"""Configuration shared by every role: ports, endpoints, sizes, env-aware CLI options.

Each role keeps its own frozen config dataclass; this module gives them the common value
parsers and the one rule for options: every ``--some-flag`` may also come from the
environment variable ``FRAMEBROKER_SOME_FLAG`` (the flag wins), so compose files can
configure services by environment alone.
"""

from __future__ import annotations

import argparse
import os
import re
from collections.abc import Callable, Mapping
from typing import Any

from framebroker.errors import ConfigError

ENV_PREFIX = "FRAMEBROKER_"

INGEST_PORT = 5555
PUBLISH_PORT = 5556
RESULTS_PORT = 5557
CONTROL_PORT = 5558
ACKED_RESULTS_PORT = 5559  # v1.1: results the sink acknowledges once stored
WORK_PORT = 5560  # v1.2: workers of a work group ask the broker for frames
SINK_CONTROL_PORT = 5561  # v1.3: the sink's control port (ping, stats)
AUTO = "auto"  # an endpoint derived from another one (see acked_endpoint, work_endpoint)

_ENDPOINT = re.compile(
    r"(tcp://[^\s:]+:(\d+|\*)|tcp://\[[0-9a-fA-F:.]+\]:(\d+|\*)|ipc://\S+|inproc://\S+)\Z"
)
_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def env_name(flag: str) -> str:
    """``--max-message-size`` -> ``FRAMEBROKER_MAX_MESSAGE_SIZE``."""
    return ENV_PREFIX + flag.lstrip("-").replace("-", "_").upper()


def add_option(
    parser: argparse.ArgumentParser,
    flag: str,
    *,
    default: Any = None,
    type: Callable[[str], Any] | None = None,
    help: str = "",
    env: Mapping[str, str] | None = None,
    **kwargs: Any,
) -> None:
    """Add ``flag`` whose default comes from ``FRAMEBROKER_<FLAG>`` when that is set.

    Boolean switches are declared with ``type=parse_bool`` and no value on the command line.
    """
    environ = os.environ if env is None else env
    name = env_name(flag)
    raw = environ.get(name)
    if type is parse_bool:
        value = default if raw is None else _convert(parse_bool, raw, name)
        parser.add_argument(
            flag,
            action=argparse.BooleanOptionalAction,
            default=value,
            help=f"{help} [env {name}]",
            **kwargs,
        )
        return
    if raw is not None:
        default = _convert(type, raw, name) if type else raw
    shown = f" (default: {default})" if default not in (None, "") else ""
    if type is not None:
        kwargs["type"] = type
    parser.add_argument(flag, default=default, help=f"{help}{shown} [env {name}]", **kwargs)


def _convert(type_: Callable[[str], Any], raw: str, name: str) -> Any:
    try:
        return type_(raw)
    except (ValueError, argparse.ArgumentTypeError) as exc:
        raise ConfigError(f"environment variable {name}={raw!r}: {exc}") from None


def parse_bool(text: str) -> bool:
    lowered = text.strip().lower()
    if lowered in _TRUE:
        return True
    if lowered in _FALSE:
        return False
    raise ConfigError(f"not a boolean: {text!r} (use 1/0, true/false, yes/no)")


def parse_size(text: str) -> tuple[int, int]:
    """``"640x480"`` -> (640, 480) as (width, height)."""
    match = re.fullmatch(r"\s*(\d{1,5})\s*[xX]\s*(\d{1,5})\s*", text)
    if not match:
        raise ConfigError(f"size must look like WIDTHxHEIGHT, e.g. 640x480; got {text!r}")
    width, height = int(match[1]), int(match[2])
    if not (0 < width <= 16384 and 0 < height <= 16384):
        raise ConfigError(f"size {width}x{height} out of range (1..16384 per side)")
    return width, height


def parse_bytes(text: str) -> int:
    """``"64M"`` / ``"512k"`` / ``"1048576"`` -> bytes."""
    match = re.fullmatch(r"\s*(\d+)\s*([kKmMgG]?)[iI]?[bB]?\s*", text)
    if not match:
        raise ConfigError(f"not a byte size: {text!r} (e.g. 64M, 512k, 1048576)")
    scale = {"": 1, "k": 1 << 10, "m": 1 << 20, "g": 1 << 30}[match[2].lower()]
    return int(match[1]) * scale


def format_bytes(size: int) -> str:
    """The shortest :func:`parse_bytes` text of ``size``: 64 << 20 -> "64M", 256 -> "256"."""
    for unit, shift in (("G", 30), ("M", 20), ("k", 10)):
        if size and size % (1 << shift) == 0:
            return f"{size >> shift}{unit}"
    return str(size)


def parse_seconds(text: str) -> float:
    """A duration in seconds, 0 allowed (meaning "off" / "never" where documented)."""
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number of seconds: {text!r}") from None
    if not value >= 0:
        raise ConfigError(f"must be 0 or more seconds: {text!r}")
    return value


def parse_positive(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise ConfigError(f"not a number: {text!r}") from None
    if not value > 0:
        raise ConfigError(f"must be greater than 0: {text!r}")
    return value


def parse_endpoint(text: str) -> str:
    """Validate a ZeroMQ endpoint (tcp://host:port, ipc://path, inproc://name)."""
    if not _ENDPOINT.match(text):
        raise ConfigError(
            f"not a ZeroMQ endpoint: {text!r} (e.g. tcp://127.0.0.1:5556 or tcp://*:5555)"
        )
    return text


def parse_optional_endpoint(text: str) -> str | None:
    """``auto`` (:data:`AUTO`), ``none`` (also ``off`` or empty: None) or an endpoint."""
    lowered = text.strip().lower()
    if lowered == AUTO:
        return AUTO
    return None if lowered in ("", "none", "off") else parse_endpoint(text.strip())


def connect_endpoint(host: str, port: int) -> str:
    """The endpoint a client connects to for ``host`` (name, IPv4 or IPv6) and ``port``."""
    if ":" in host and not host.startswith("["):
        host = f"[{host}]"
    return parse_endpoint(f"tcp://{host}:{port}")


def bind_endpoint(port: int, host: str = "*") -> str:
    return parse_endpoint(f"tcp://{host}:{port}")


def acked_endpoint(results: str) -> str:
    """The acknowledged results endpoint that goes with a results endpoint (protocol v1.1).

    TCP: the same host, port + 2 (5557 -> 5559; port 0 or ``*`` stays as it is).
    ``ipc://PATH`` -> ``ipc://PATH.acked``, ``inproc://NAME`` -> ``inproc://NAME.acked``.
    """
    return _sibling(results, "acked", "acknowledged results")


def work_endpoint(control: str) -> str:
    """The broker's work endpoint that goes with its control endpoint (protocol v1.2).

    TCP: the same host, port + 2 (5558 -> 5560; port 0 or ``*`` stays as it is).
    ``ipc://PATH`` -> ``ipc://PATH.work``, ``inproc://NAME`` -> ``inproc://NAME.work``.
    """
    return _sibling(control, "work", "work")


def sink_control_endpoint(results: str) -> str:
    """The sink's control endpoint that goes with its results endpoint (protocol v1.3).

    TCP: the same host, port + 4 (5557 -> 5561; port 0 or ``*`` stays as it is).
    ``ipc://PATH`` -> ``ipc://PATH.control``, ``inproc://NAME`` -> ``inproc://NAME.control``.
    """
    return _sibling(results, "control", "sink control", offset=SINK_CONTROL_PORT - RESULTS_PORT)


def _sibling(endpoint: str, suffix: str, what: str, offset: int = 2) -> str:
    """The endpoint ``offset`` ports above ``endpoint`` (or with ``.suffix`` for ipc/inproc)."""
    parse_endpoint(endpoint)
    if not endpoint.startswith("tcp://"):
        return f"{endpoint}.{suffix}"
    host, port = endpoint.rsplit(":", 1)
    if port in ("*", "0"):
        return endpoint
    if int(port) + offset > 65535:
        raise ConfigError(f"no {what} port after {endpoint} (port + {offset} > 65535)")
    return f"{host}:{int(port) + offset}"


# --- broker sets (docs/protocol.md "Broker sets"; resolved by framebroker.brokerset) ---


def parse_broker(text: str) -> tuple[str, ...]:
    """``"b1, b2,b3"`` -> ("b1", "b2", "b3"): the hosts of a ``--broker`` value.

    Duplicates are kept once, in order; a host is a name, an IPv4 or an IPv6 address
    (bare or in brackets). ConfigError for an empty list or a malformed host.
    """
    hosts: list[str] = []
    for part in text.split(","):
        host = part.strip()
        if not host:
            continue
        bare = host[1:-1] if host.startswith("[") and host.endswith("]") else host
        if not bare or any(c.isspace() or c in "/@" for c in bare):
            raise ConfigError(
                f"not a broker host for its endpoints: {host!r} (e.g. broker, 10.0.0.7, b1,b2,b3)"
            )
        if bare not in hosts:
            hosts.append(bare)
    if not hosts:
        raise ConfigError(f"no broker host in {text!r} (e.g. broker, 10.0.0.7 or b1,b2,b3)")
    return tuple(hosts)


def broker_endpoints(broker: str, port: int) -> str:
    """The endpoint list of ``port`` on every host of ``broker``: ``tcp://b1:P,tcp://b2:P``."""
    return ",".join(connect_endpoint(host, port) for host in parse_broker(broker))


def parse_endpoints(text: str) -> tuple[str, ...]:
    """A comma-separated list of ZeroMQ endpoints (one or more), duplicates kept once."""
    out: list[str] = []
    for part in text.split(","):
        part = part.strip()
        if part and parse_endpoint(part) not in out:
            out.append(part)
    if not out:
        raise ConfigError(f"no endpoint in {text!r} (e.g. tcp://b1:5556,tcp://b2:5556)")
    return tuple(out)


def check_endpoints(text: str) -> str:
    """Validate an endpoint list and return it as given (for config fields)."""
    parse_endpoints(text)
    return text


def add_broker_options(parser: argparse.ArgumentParser, *endpoints: str) -> None:
    """Client-side options: ``--broker HOST`` plus explicit endpoint overrides.

    ``endpoints`` names which of "ingest", "publish", "results", "control", "work" this client
    uses; each gets ``--<name> ENDPOINT`` defaulting to ``tcp://<broker>:<port>``.
    Resolve them with :func:`resolve_endpoint`.
    """
    add_option(
        parser,
        "--broker",
        default="127.0.0.1",
        type=_broker_arg,
        help="host name or address of the broker (and sink); a broker set: a list "
        "b1,b2,b3 or a name resolving to several addresses (the sink: the first host)",
    )
    for name in endpoints:
        add_option(
            parser,
            f"--{name}",
            default=None,
            type=_endpoint_arg if name == "results" else _endpoints_arg,
            help=f"{name} endpoint; overrides --broker (tcp://HOST:{_PORTS[name]})"
            + ("" if name == "results" else "; a broker set: a comma-separated list"),
        )


_PORTS = {
    "ingest": INGEST_PORT,
    "publish": PUBLISH_PORT,
    "results": RESULTS_PORT,
    "control": CONTROL_PORT,
    "work": WORK_PORT,
}


def resolve_endpoint(args: argparse.Namespace, name: str) -> str:
    """The endpoint for ``name`` from parsed args: the explicit flag or --broker's hosts.

    A broker set gives the list of ``name``'s endpoint on every host; the sink (``results``)
    is one service, looked for on the set's first host.
    """
    explicit: str | None = getattr(args, name, None)
    if explicit:
        return explicit
    if name == "results":
        return connect_endpoint(parse_broker(args.broker)[0], _PORTS[name])
    return broker_endpoints(args.broker, _PORTS[name])


def _argparse(parse: Callable[[str], Any]) -> Callable[[str], Any]:
    def convert(text: str) -> Any:
        try:
            return parse(text)
        except ConfigError as exc:
            raise argparse.ArgumentTypeError(str(exc)) from None

    convert.__name__ = parse.__name__
    return convert


def _check_broker(text: str) -> str:
    parse_broker(text)
    return text


_broker_arg = _argparse(_check_broker)
_endpoint_arg = parse_endpoint
_endpoints_arg = _argparse(check_endpoints)
