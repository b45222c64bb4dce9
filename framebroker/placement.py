"""Placement: which broker of a set serves a stream (rendezvous hashing), pure.

Every client ranks the brokers of the set for a stream by a weight computed from the
stream id and the broker's *member id* alone, and the stream belongs to the highest-ranked
live broker: highest-random-weight (rendezvous) hashing. No client talks to another and no
broker is asked, yet all agree; when a broker leaves only the streams it ranked first for
move (each to its own second choice), and when one joins only the streams that now rank it
first move to it: about 1/N of them either way.

The weight is normative (docs/protocol.md, "Broker sets", with vectors), so a client in any
language places streams exactly as this one::

    weight(member, stream) = first 8 bytes of SHA-256(utf8(member) 0x00 utf8(stream)),
                             read as a big-endian unsigned 64-bit integer

Ranking is by weight, highest first; equal weights (never seen in practice) are ordered by
the member id's UTF-8 bytes, ascending. A member id is ``ADDRESS:PORT`` of the broker's
ingest endpoint, the address as a literal (``10.0.0.7:5555``, ``[fd00::7]:5555``): what every
client derives from the same DNS answer.

Pure: strings in, integers and lists out; no sockets.
"""

from __future__ import annotations

import hashlib
from collections.abc import Collection, Iterable


def weight(member: str, stream: str) -> int:
    """The rendezvous weight of ``member`` for ``stream`` (0 .. 2**64 - 1)."""
    digest = hashlib.sha256(member.encode() + b"\0" + stream.encode()).digest()
    return int.from_bytes(digest[:8], "big")


def ranking(stream: str, members: Iterable[str]) -> list[str]:
    """``members`` in the order ``stream`` prefers them: the owner first, then failovers."""
    return sorted(set(members), key=lambda m: (-weight(m, stream), m.encode()))


def owner(stream: str, members: Iterable[str], live: Collection[str] | None = None) -> str | None:
    """The member serving ``stream``: the highest-ranked one in ``live`` (all when None).

    When no member is live, the highest-ranked of all: a client keeps publishing where the
    stream belongs and the broker gets it as soon as it is back.
    """
    ranked = ranking(stream, members)
    if not ranked:
        return None
    if live is not None:
        for member in ranked:
            if member in live:
                return member
    return ranked[0]


def moved(streams: Iterable[str], before: Iterable[str], after: Iterable[str]) -> list[str]:
    """The streams whose owner differs between the member sets ``before`` and ``after``."""
    old, new = list(before), list(after)
    return [s for s in streams if owner(s, old) != owner(s, new)]
