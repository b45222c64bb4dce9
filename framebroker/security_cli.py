"""CURVE on the command line: the flags every command shares, and ``framebroker keys``.

Servers (``broker``, ``sink``) take ``--curve-key FILE`` (their key pair) and
``--curve-allow DIR`` (client public keys); clients take ``--curve-key FILE`` (their key
pair) and ``--curve-broker-key`` / ``--curve-sink-key`` (the servers' public keys, as a
file or as 40 Z85 characters). Like every flag, each reads ``FRAMEBROKER_<FLAG>`` too, so
compose files point them at mounted key files.
"""

from __future__ import annotations

import argparse
import sys

from framebroker.cli import EXIT_OK, Command
from framebroker.config import add_option, parse_bool
from framebroker.errors import ConfigError
from framebroker.keys import generate_key_pair, load_public_key
from framebroker.security import SERVERS, ClientSecurity, ServerSecurity

_HOWTO = "see `framebroker keys generate`"


def add_server_security_options(parser: argparse.ArgumentParser) -> None:
    add_option(
        parser,
        "--curve-key",
        metavar="FILE",
        help="this server's key pair (NAME.key_secret); with --curve-allow every port is "
        f"CURVE-encrypted and admits only allowed clients ({_HOWTO})",
    )
    add_option(
        parser,
        "--curve-allow",
        metavar="DIR",
        help="directory of the public keys (NAME.key) of the clients admitted; re-read "
        "when files are added or removed",
    )


def server_security(args: argparse.Namespace) -> ServerSecurity:
    return ServerSecurity(key=args.curve_key or None, allow=args.curve_allow or None)


def add_client_security_options(parser: argparse.ArgumentParser, *servers: str) -> None:
    """``--curve-key`` and, for each of ``servers`` ("broker", "sink"), its public key."""
    add_option(
        parser,
        "--curve-key",
        metavar="FILE",
        help=f"this client's key pair (NAME.key_secret): connect with CURVE ({_HOWTO})",
    )
    for server in servers:
        if server not in SERVERS:
            raise ValueError(f"unknown server {server!r}")
        add_option(
            parser,
            f"--curve-{server}-key",
            metavar="KEY",
            help=f"the {server}'s public key: its NAME.key file, or the key's 40 characters",
        )


def client_security(args: argparse.Namespace, *servers: str) -> ClientSecurity:
    """The ClientSecurity of the parsed flags, checked to have a key for each server."""
    security = ClientSecurity(
        key=args.curve_key or None,
        broker_key=getattr(args, "curve_broker_key", None) or None,
        sink_key=getattr(args, "curve_sink_key", None) or None,
    )
    return security.require(*servers)


# --- framebroker keys ---------------------------------------------------------------------


def add_keys_arguments(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="keys_action", metavar="ACTION", required=True)
    generate = actions.add_parser(
        "generate",
        help="write NAME.key (public, 0644) and NAME.key_secret (secret, 0600)",
        description="Write a CURVE key pair per NAME: NAME.key, the public certificate to "
        "hand out, and NAME.key_secret, the secret certificate that stays with NAME (mode "
        "0600). NAME may include a directory (keys/broker), created if missing.",
    )
    generate.add_argument("names", nargs="+", metavar="NAME", help="e.g. broker or keys/cam1")
    add_option(
        generate, "--force", default=False, type=parse_bool, help="replace existing key files"
    )
    add_option(
        generate,
        "--keep",
        default=False,
        type=parse_bool,
        help="keep an existing key pair instead of failing (for one-shot setup jobs)",
    )
    show = actions.add_parser("show", help="print the public key in certificate files")
    show.add_argument("files", nargs="+", metavar="FILE", help="NAME.key or NAME.key_secret")


def run_keys(args: argparse.Namespace) -> int:
    if args.keys_action == "show":
        for path in args.files:
            print(f"{path}: {load_public_key(path).decode()}")
        return EXIT_OK
    if args.force and args.keep:
        raise ConfigError("--force and --keep contradict each other")
    for name in args.names:
        public, secret, written = generate_key_pair(name, overwrite=args.force, keep=args.keep)
        key = load_public_key(public).decode()
        verb = "wrote" if written else "kept"
        print(f"{verb} {public} and {secret} (public key {key})")
    sys.stdout.flush()
    return EXIT_OK


KEYS = Command(
    name="keys",
    help="make and inspect CURVE key pairs (ZeroMQ certificates) for --curve-* flags",
    add_arguments=add_keys_arguments,
    run=run_keys,
)
