"""The one exception tree of framebroker.

::

    FrameBrokerError                 root: catch this to catch everything of ours
    ├── ConfigError                  bad flag, env variable or config value (ValueError too)
    ├── ProtocolError                bytes that are not a valid message; carries the raw data
    │   └── VersionError             a message of a protocol major version we do not speak
    ├── TransportError               a ZeroMQ operation failed (wraps zmq.ZMQError)
    ├── SourceError                  a frame source could not be opened or read
    ├── CodecError                   pixels could not be encoded or decoded
    │   └── ImageError               an image that cannot be sent (bad type, dtype, shape)
    ├── ProcessorError               a processor could not be loaded or failed
    ├── StoreError                   the results store could not be opened, read or written
    ├── RecordingError               a recording (segment files) could not be read or written
    └── ShmError                     a shared-memory segment could not be made, mapped or read

Every error carries a message written for the person who has to act on it.
"""

from __future__ import annotations


class FrameBrokerError(Exception):
    """Root of every exception framebroker raises on purpose."""


class ConfigError(FrameBrokerError, ValueError):
    """A configuration value is missing, malformed or out of range."""


class ProtocolError(FrameBrokerError):
    """Bytes that do not decode to a valid framebroker message.

    ``data`` holds (a prefix of) the offending bytes for logging and tests. ``kind`` is a
    short machine-readable label of what was wrong (the broker counts drops by it), e.g.
    ``"no_terminator"``, ``"truncated"``, ``"header"``, ``"topic_mismatch"``, ``"version"``,
    ``"size_mismatch"`` / ``"not_jpeg"`` (a payload that does not fit its header).
    """

    default_kind = "invalid"

    def __init__(
        self, reason: str, data: bytes | memoryview | None = None, *, kind: str | None = None
    ) -> None:
        super().__init__(reason)
        self.reason = reason
        self.data = bytes(data[:64]) if data is not None else b""
        self.kind = kind or self.default_kind


class VersionError(ProtocolError):
    """A message of a protocol major version this build does not speak."""

    default_kind = "version"


class TransportError(FrameBrokerError):
    """A socket could not be created, bound, connected or used."""


class SourceError(FrameBrokerError):
    """A frame source (camera, file, URL, pattern) could not be opened or read."""


class CodecError(FrameBrokerError):
    """Pixels could not be encoded to, or decoded from, their wire encoding."""


class ImageError(CodecError, ValueError):
    """An image handed to ``Publisher.send`` that no frame can carry: not a numpy array, or
    a dtype, shape or channel count the encoding does not support. A ValueError too: it
    is a bad argument, caught before anything is encoded or sent."""


class ProcessorError(FrameBrokerError):
    """A processor could not be found, loaded or run."""


class StoreError(FrameBrokerError):
    """The results store (SQLite, JSON Lines) could not be opened, read or written."""


class RecordingError(FrameBrokerError):
    """A recording could not be read or written: not a segment file, no such stream, no
    frame at the time asked, nothing to export."""


class ShmError(FrameBrokerError):
    """A shared-memory segment could not be created (no room in /dev/shm), mapped or read."""
