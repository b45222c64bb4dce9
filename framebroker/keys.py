"""CURVE key files: generate a key pair, load one, load an allow-list of public keys.

The files are ZeroMQ certificates (the format of czmq's ``zcert`` and pyzmq's
``zmq.auth``), so they work with other ZeroMQ tools::

    NAME.key          public certificate: give it to whoever must recognise NAME (mode 0644)
    NAME.key_secret   secret certificate: public and secret key, stays with NAME (mode 0600)

Keys are 40-character Z85 strings (32 bytes). Every failure is a ConfigError naming the
file and what to do about it.
"""

from __future__ import annotations

import contextlib
import datetime
import logging
import os
import stat
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import zmq
import zmq.auth
from zmq.utils import z85

from framebroker.errors import ConfigError
from framebroker.ratelimit import RateLimitedLog

log = logging.getLogger("framebroker.keys")
zap_log = logging.getLogger("framebroker.security.zap")  # the allow-list's decisions

PUBLIC_SUFFIX = ".key"
SECRET_SUFFIX = ".key_secret"
SECRET_MODE = 0o600
PUBLIC_MODE = 0o644
Z85_KEY_LENGTH = 40

_PUBLIC_ADVICE = "Give this file to the services that must recognise this key."
_SECRET_ADVICE = "DO NOT PROVIDE THIS FILE TO OTHER USERS nor change its permissions."


@dataclass(frozen=True)
class KeyPair:
    """A loaded key pair (Z85 bytes); ``path`` is the secret certificate it came from."""

    public: bytes
    secret: bytes = field(repr=False)
    path: str = ""


def check_key(key: bytes, what: str) -> bytes:
    """``key`` if it is a Z85-encoded 32-byte CURVE key, else ConfigError."""
    if len(key) != Z85_KEY_LENGTH:
        raise ConfigError(f"{what}: a CURVE key is {Z85_KEY_LENGTH} Z85 characters, not {len(key)}")
    try:
        z85.decode(key)
    except (ValueError, KeyError, TypeError):
        raise ConfigError(f"{what}: not a Z85-encoded CURVE key") from None
    return key


def _read(path: str) -> tuple[bytes, bytes | None]:
    if not os.path.isfile(path):
        raise ConfigError(f"key file {path} does not exist (make one: framebroker keys generate)")
    try:
        public, secret = zmq.auth.load_certificate(path)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"key file {path} is not a ZeroMQ certificate: {exc}") from None
    check_key(public, f"key file {path}")
    return public, secret


def load_key_pair(path: str | os.PathLike[str]) -> KeyPair:
    """The key pair in a secret certificate (``NAME.key_secret``)."""
    path = os.fspath(path)
    public, secret = _read(path)
    if secret is None:
        raise ConfigError(
            f"key file {path} holds only a public key; give the secret certificate "
            f"({Path(path).stem}{SECRET_SUFFIX}) written next to it by `framebroker keys generate`"
        )
    check_key(secret, f"key file {path}")
    if zmq.curve_public(secret) != public:
        raise ConfigError(f"key file {path}: its public key does not belong to its secret key")
    _warn_if_exposed(path)
    return KeyPair(public, secret, path)


def load_public_key(value: str | os.PathLike[str]) -> bytes:
    """A public key from a certificate file (``NAME.key`` or ``NAME.key_secret``) or
    given inline as its 40 Z85 characters."""
    text = os.fspath(value)
    if os.path.exists(text):
        return _read(text)[0]
    if len(text) == Z85_KEY_LENGTH:
        return check_key(text.encode("ascii", "replace"), "public key")
    raise ConfigError(
        f"public key {text!r} is neither a key file nor a key ({Z85_KEY_LENGTH} Z85 characters)"
    )


def load_allow_list(directory: str | os.PathLike[str]) -> frozenset[bytes]:
    """The public keys of every ``*.key`` certificate in ``directory``."""
    directory = os.fspath(directory)
    if not os.path.isdir(directory):
        raise ConfigError(f"allow-list {directory} is not a directory of client public keys")
    try:
        keys = zmq.auth.load_certificates(directory)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"allow-list {directory}: {exc}") from None
    for key in keys:
        check_key(key, f"allow-list {directory}")
    return frozenset(keys)


class AllowList:
    """The ZAP decision (pyzmq's credentials-provider interface, called in the
    authenticator's thread): a client key is admitted when it is the server's own or in
    the allow-list directory, which is re-read when its entries change."""

    def __init__(self, directory: str, own: bytes, service: str) -> None:
        self.directory = directory
        self._own = own
        self._service = service
        self._mtime = self._stamp()
        self.keys = load_allow_list(directory)
        self._rlog = RateLimitedLog(zap_log)

    def _stamp(self) -> int:
        try:
            return os.stat(self.directory).st_mtime_ns
        except OSError:
            return -1

    def _reload_if_changed(self) -> None:
        stamp = self._stamp()
        if stamp == self._mtime:
            return
        self._mtime = stamp
        try:
            self.keys = load_allow_list(self.directory)
        except ConfigError as exc:
            zap_log.error(
                "%s: allow-list not reloaded, keeping the old one: %s", self._service, exc
            )
            return
        zap_log.info(
            "%s: allow-list %s reloaded: %d client keys",
            self._service,
            self.directory,
            len(self.keys),
        )

    def callback(self, domain: str, key: bytes) -> bool:
        self._reload_if_changed()
        if key == self._own or key in self.keys:
            return True
        self._rlog.warning(
            "deny",
            "%s: CURVE client key %s is not in the allow-list %s (add its NAME.key there "
            "to admit it)",
            self._service,
            key.decode("ascii", "replace"),
            self.directory,
        )
        return False


def _warn_if_exposed(path: str) -> None:
    mode = stat.S_IMODE(os.stat(path).st_mode)
    if mode & 0o077:
        log.warning(
            "secret key file %s is readable by other users (mode %04o); chmod 600 it", path, mode
        )


# --- writing ------------------------------------------------------------------------------


def key_paths(stem: str | os.PathLike[str]) -> tuple[Path, Path]:
    """(public, secret) certificate paths for ``stem`` (``keys/broker`` ->
    ``keys/broker.key``, ``keys/broker.key_secret``)."""
    base = os.fspath(stem)
    for suffix in (SECRET_SUFFIX, PUBLIC_SUFFIX):
        base = base.removesuffix(suffix)
    if not Path(base).name:
        raise ConfigError(f"key name {os.fspath(stem)!r} has no file name")
    return Path(base + PUBLIC_SUFFIX), Path(base + SECRET_SUFFIX)


def generate_key_pair(
    stem: str | os.PathLike[str], *, overwrite: bool = False, keep: bool = False
) -> tuple[Path, Path, bool]:
    """Write a new key pair as ``STEM.key`` (0644) and ``STEM.key_secret`` (0600).

    Returns (public path, secret path, written). An existing pair is an error, unless
    ``overwrite`` (replace it) or ``keep`` (leave it, written=False; it must be valid).
    """
    public_path, secret_path = key_paths(stem)
    existing = [p for p in (public_path, secret_path) if p.exists()]
    if existing and keep and not overwrite:
        if load_key_pair(secret_path).public != _read(str(public_path))[0]:
            raise ConfigError(f"{public_path} and {secret_path} hold different keys")
        return public_path, secret_path, False
    if existing and not overwrite:
        raise ConfigError(
            f"{existing[0]} already exists; use --force to replace it or --keep to keep it"
        )
    public, secret = zmq.curve_keypair()
    name = public_path.stem
    try:
        public_path.parent.mkdir(parents=True, exist_ok=True)
        _write(secret_path, _certificate(name, public, secret), SECRET_MODE)
        _write(public_path, _certificate(name, public, None), PUBLIC_MODE)
    except OSError as exc:
        raise ConfigError(f"cannot write key pair {secret_path}: {exc.strerror or exc}") from None
    return public_path, secret_path, True


def _certificate(name: str, public: bytes, secret: bytes | None) -> str:
    kind, advice = ("Secret", _SECRET_ADVICE) if secret else ("Public", _PUBLIC_ADVICE)
    now = datetime.datetime.now().isoformat(timespec="seconds")
    lines = [
        f"#   ****  Generated on {now} by framebroker  ****",
        f"#   ZeroMQ CURVE {kind} Certificate",
        f"#   {advice}",
        "",
        "metadata",
        f'    name = "{name}"',
        "curve",
        f'    public-key = "{public.decode()}"',
    ]
    if secret:
        lines.append(f'    secret-key = "{secret.decode()}"')
    return "\n".join(lines) + "\n"


def _write(path: Path, text: str, mode: int) -> None:
    """Write atomically with exactly ``mode`` (never briefly more open than that)."""
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.")  # created 0600
    try:
        with os.fdopen(fd, "w", encoding="ascii") as f:
            os.fchmod(f.fileno(), mode)
            f.write(text)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
