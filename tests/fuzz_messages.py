"""Generated bad messages for the socket fuzz tests, each with the reason its receiver gives.

The reason comes from the reference decoder (``framebroker.protocol``, the sink's
``ResultRecord``) or, for the publish port, from a model of what libzmq passes up; a
generated message that happens to be valid is skipped, so every message sent is bad.
"""

from __future__ import annotations

import collections
import dataclasses
import random
import struct
from collections.abc import Callable
from typing import Any

import msgpack

from framebroker import control_protocol, protocol, shm_protocol
from framebroker.broker.limits import MAX_CONTROL_PARTS
from framebroker.errors import ProtocolError
from framebroker.protocol import encode_result, topic_for
from framebroker.sink.record import ResultRecord
from tests.hostile import header, result


def junk_value(rng: random.Random, depth: int = 0) -> Any:
    roll = rng.random()
    if depth > 3 or roll < 0.4:
        return rng.choice(
            [None, True, -1, 2**64 - 1, -(2**63), 1.5, float("nan"), "", "x" * 300, b"\xff"]
        )
    if roll < 0.7:
        return [junk_value(rng, depth + 1) for _ in range(rng.randrange(4))]
    return {rng.choice(["v", "op", "k", "seq", ""]): junk_value(rng, depth + 1) for _ in range(3)}


def mutate(rng: random.Random, m: dict[str, Any]) -> bytes:
    """``m`` with 1-3 fields deleted or given wrong values, packed; sometimes not UTF-8."""
    m = dict(m)
    for _ in range(rng.randrange(1, 4)):
        key = rng.choice(sorted(m) or ["v"])
        if rng.random() < 0.25:
            m.pop(key, None)
        else:
            m[key] = junk_value(rng)
    utf8 = rng.random() < 0.8
    if not utf8:
        m[rng.choice(sorted(m) or ["v"])] = bytes([0xFF, rng.randrange(256), 0xFE])
    return msgpack.packb(m, use_bin_type=utf8)


def raw_frame(
    topic: bytes, major: int, head: bytes, payload: bytes, hlen: int | None = None
) -> bytes:
    length = len(head) if hlen is None else hlen
    return topic + b"\x00" + bytes([major]) + struct.pack(">I", length) + head + payload


def bad_frame(rng: random.Random, i: int) -> bytes:
    """A frame message with one of the faults of the issue; its topic is a new stream."""
    name = f"bad/{i}"
    h = header(name, i)
    good = protocol.encode_frame(h, bytes(72))
    m = h.to_map()
    packed = msgpack.packb(m)
    choice = rng.randrange(14)
    if choice == 0:  # random bytes
        return rng.randbytes(rng.randrange(0, 400))
    if choice == 1:  # a huge stream name: no terminator within 201 bytes
        return b"a" * rng.randrange(201, 5000) + good
    if choice == 2:  # truncated anywhere before the payload
        return good[: rng.randrange(0, len(good) - 72)]
    if choice == 3:  # a header length beyond the message or over 64 KiB
        return raw_frame(name.encode(), 1, packed, b"", rng.choice([len(packed) + 1, 70_000]))
    if choice == 4:  # unknown major version, in the preamble or in the header
        if rng.random() < 0.5:
            return raw_frame(name.encode(), rng.choice([0, 2, 9, 255]), packed, bytes(72))
        return raw_frame(name.encode(), 1, msgpack.packb({**m, "v": [2, 0]}), bytes(72))
    if choice == 5:  # a header that is no msgpack map
        head = rng.choice([b"\xc1", msgpack.packb([1, 2]), b"", rng.randbytes(20)])
        return raw_frame(name.encode(), 1, head, bytes(72))
    if choice == 6:  # wrong types in the header
        return raw_frame(name.encode(), 1, mutate(rng, m), bytes(72))
    if choice == 7:  # a raw payload that does not fit the shape
        return protocol.encode_frame(h, bytes(rng.choice([0, 71, 73, 1000])))
    if choice == 8:  # a jpeg payload that is empty or no JPEG
        jpeg = dataclasses.replace(h, encoding="jpeg")
        return protocol.encode_frame(jpeg, rng.choice([b"", b"\xff", b"PNG...."]))
    if choice == 9:  # a shape that lies: dimensions out of range, wrong rank
        shape = rng.choice([[0, 4], [4], [1, 2, 3, 4], [2**20, 1], [2**64 - 1, 1]])
        return raw_frame(name.encode(), 1, msgpack.packb({**m, "shape": shape}), bytes(72))
    if choice == 10:  # a stream name that is not UTF-8
        head = msgpack.packb({**m, "stream": b"bad/\xff\xfe"}, use_bin_type=False)
        return raw_frame(b"bad/\xff\xfe", 1, head, bytes(72))
    if choice == 11:  # topic and header stream differ
        return raw_frame(f"bad/x{i}".encode(), 1, packed, bytes(72))
    if choice == 12:  # an invalid stream id, long or with bad characters
        stream = rng.choice(["x" * 201, "/abs", "$sys", "sp ace"])
        return raw_frame(stream.encode()[:200], 1, msgpack.packb({**m, "stream": stream}), b"")
    return raw_frame(b"\x00" + name.encode(), 1, packed, bytes(72))  # empty topic


def frame_reason(data: bytes) -> str | None:
    """The kind the reference decoders give ``data`` at the broker's ingest; None for a
    valid message. A message whose topic starts with ``$`` is a shared-memory descriptor
    (protocol v1.4), which only a producer's descriptor (not a network notice) may be."""
    try:
        if data[:1] == b"$":
            if isinstance(shm_protocol.decode_descriptor(data), shm_protocol.NetworkNotice):
                return "header"
        else:
            protocol.decode_frame(data)
    except ProtocolError as exc:
        return exc.kind
    return None


def bad_result(rng: random.Random, i: int) -> list[bytes]:
    good = result(i, consumer="fuzz").to_map()
    choice = rng.randrange(8)
    if choice == 0:
        return [rng.randbytes(rng.randrange(0, 300))]
    if choice == 1:
        return [msgpack.packb(junk_value(rng))]
    if choice in (2, 3):
        return [mutate(rng, good)]
    if choice == 4:  # a number SQLite cannot hold
        return [msgpack.packb({**good, rng.choice(["seq", "session", "t_start"]): 2**64 - 1})]
    if choice == 5:  # nested deeper than the store keeps
        nested: Any = 1
        for _ in range(70):
            nested = [nested]
        return [msgpack.packb({**good, "result": {"deep": nested}})]
    if choice == 6:
        return [msgpack.packb({**good, "v": [rng.choice([0, 2, 99]), 0]})]
    return [encode_result(result(i, consumer="fuzz"))] * rng.randrange(2, 6)  # multipart


def result_reason(body: bytes) -> str | None:
    try:
        ResultRecord.from_message(protocol.decode_result(body), 0)
    except ProtocolError as exc:
        return exc.kind
    return None


def bad_control(rng: random.Random) -> list[bytes]:
    """A control message after the DEALER: an envelope of 0..12 parts and a body."""
    body = rng.choice(
        [
            rng.randbytes(rng.randrange(0, 100)),
            msgpack.packb(junk_value(rng)),
            mutate(rng, {"v": [1, 0], "op": "ping"}),
            msgpack.packb({"v": [rng.randrange(2, 9), 0], "op": "stats"}),
            control_protocol.encode_request(rng.choice(["ping", "stats", "streams", "reboot"])),
        ]
    )
    envelope = [rng.randbytes(rng.randrange(0, 8)) for _ in range(rng.choice([0, 0, 0, 1, 3, 12]))]
    return [*envelope, body]


def control_reason(parts: list[bytes]) -> str | None:
    """Why the broker refuses this message; None if it answers ok."""
    if len(parts) + 1 > MAX_CONTROL_PARTS:  # + the identity the ROUTER adds
        return "control_envelope"
    try:
        control_protocol.decode_request(parts[-1])  # an unknown op is invalid too
    except ProtocolError as exc:
        return "control_" + exc.kind
    return None


def generate(
    make: Callable[[random.Random, int], Any], reason: Callable[[Any], Any], n: int, seed: int
) -> list:
    """``n`` (message, reason) pairs, skipping any message the receiver would accept."""
    rng = random.Random(seed)
    out = []
    while len(out) < n:
        message = make(rng, len(out))
        why = reason(message)
        if why is not None:
            out.append((message, why))
    return out


PROBE = b"fzprobe"  # the flood socket subscribes to this first, to know its link is up


def publish_messages(
    rng: random.Random, limit: int, n: int
) -> tuple[list[bytes], collections.Counter[str]]:
    """Subscribe floods, unsubscribes and junk for the publish port, and what the broker counts.

    Prefixes start with ``fz`` (or are empty: every stream's cached frame, which the
    cache rate limits must hold back), so they never overlap the good subscriber's.
    """
    # tracked first: the good subscriber's prefix and the flood socket's probe
    prefixes: set[bytes] = {topic_for("good/cam"), PROBE}
    held: collections.Counter[bytes] = collections.Counter({PROBE: 1})  # by the XSUB
    recent: list[bytes] = []
    counts: collections.Counter[str] = collections.Counter()
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.1:
            msg = rng.choice([b"", b"\x02junk", b"\xffjunk", bytes([rng.randrange(2, 256)])])
            counts["subscription_invalid"] += 1
        elif roll < 0.3 and recent:
            prefix = rng.choice(recent)
            msg = b"\x00" + prefix
            held[prefix] -= 1
            if held[prefix] == 0:  # an XSUB sends an unsubscribe when it holds no more
                counts["unsubscriptions"] += 1
                prefixes.discard(prefix)
                recent.remove(prefix)
        else:
            prefix = rng.choice([b"", b"fz", b"fz" + rng.randbytes(rng.randrange(1, 200))])
            msg = b"\x01" + prefix
            counts["subscriptions"] += 1
            if held[prefix] == 0:
                recent.append(prefix)
            held[prefix] += 1
            if prefix not in prefixes and len(prefixes) >= limit:
                counts["subscription_limit"] += 1
            else:
                prefixes.add(prefix)
        out.append(msg)
    counts["prefixes"] = len(prefixes)
    return out, counts
