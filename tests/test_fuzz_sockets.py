"""Socket-level fuzzing: thousands of generated bad messages at every bound socket.

A real broker and sink run in threads on random loopback ports. Each test throws
generated bad messages (seeded, so reproducible: ``FRAMEBROKER_FUZZ_SEED``; how many:
``FRAMEBROKER_FUZZ_N``) at one bound socket, interleaved with good traffic from another
peer, then checks that the service did not crash, that its counters match what was sent
by reason (the expected reason of each message comes from the reference decoder), and
that good traffic went on: a subscriber receives every good frame in order, every good
result is stored exactly once. Each test prints its counts (``pytest -s``) in one line:
``fuzz <socket>: <n> messages, by reason {...}, crashes 0``.
"""

from __future__ import annotations

import collections
import dataclasses
import os
import random
import sqlite3
import struct
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import msgpack
import pytest
import zmq

from broker import Broker, BrokerConfig
from broker.limits import MAX_CONTROL_PARTS, BrokerLimits
from broker.store import ResultRecord
from framebroker import protocol
from framebroker.errors import ProtocolError
from framebroker.protocol import encode_result, topic_for
from tests.hostile import (
    LOOPBACK,
    Peers,
    RunningSink,
    drain,
    frame,
    header,
    publish_until_seen,
    result,
    seqs_of,
    wait_until,
)

N = int(os.environ.get("FRAMEBROKER_FUZZ_N", "10000"))
SEED = int(os.environ.get("FRAMEBROKER_FUZZ_SEED", "20240611"))
GOOD_EVERY = 10  # one good message from the other peer per this many bad ones
MAX_FRAME = 64 << 10  # the broker's --max-message-size in these tests
MAX_RESULT = 64 << 10  # the sink's

pytestmark = pytest.mark.slow


def report(socket: str, n: int, by_reason: collections.Counter[str]) -> None:
    print(f"\nfuzz {socket}: {n} messages, by reason {dict(sorted(by_reason.items()))}, crashes 0")


# --- generators: each returns (message parts, the reason the receiver must give) ----------


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
    """The kind the reference decoder gives ``data``; None for a valid frame."""
    try:
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
            protocol.encode_request(rng.choice(["ping", "stats", "streams", "reboot"])),
        ]
    )
    envelope = [rng.randbytes(rng.randrange(0, 8)) for _ in range(rng.choice([0, 0, 0, 1, 3, 12]))]
    return [*envelope, body]


def control_reason(parts: list[bytes]) -> str | None:
    """Why the broker refuses this message; None if it answers ok."""
    if len(parts) + 1 > MAX_CONTROL_PARTS:  # + the identity the ROUTER adds
        return "control_envelope"
    try:
        protocol.decode_request(parts[-1])  # an unknown op is invalid too
    except ProtocolError as exc:
        return "control_" + exc.kind
    return None


def generate(make: Callable[[random.Random, int], Any], reason: Callable[[Any], Any]) -> list:
    """N (message, reason) pairs, skipping any message the receiver would accept."""
    rng = random.Random(SEED)
    out = []
    while len(out) < N:
        message = make(rng, len(out))
        why = reason(message)
        if why is not None:
            out.append((message, why))
    return out


# --- the broker ----------------------------------------------------------------------------


def start_broker(**limits: Any) -> tuple[Broker, threading.Thread]:
    config = BrokerConfig(
        ingest=LOOPBACK,
        publish=LOOPBACK,
        control=LOOPBACK,
        log_stats=0.0,
        max_message_size=MAX_FRAME,
        limits=BrokerLimits(**limits),
    )
    broker = Broker(config)
    return broker, broker.run_in_thread()


class GoodStream:
    """Good frames of one stream from their own PUB, and a subscriber that must get them all."""

    def __init__(self, broker: Broker, peers: Peers, stream: str = "good/cam") -> None:
        self.broker, self.stream = broker, stream
        self.sub = peers.sub(broker.publish_endpoint, topic_for(stream))
        self.pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        wait_until(lambda: broker.stats().subscriptions >= 1, what="the good subscription")
        self.first = publish_until_seen(broker, self.pub, stream) + 1
        drain(self.sub)
        self.seq = self.first

    def send(self) -> None:
        self.pub.send(frame(self.stream, self.seq))
        self.seq += 1

    def check(self) -> list[int]:
        """Every good frame sent arrived, in order (cached repeats of the newest allowed)."""
        last = self.seq
        self.send()  # one more, after everything bad
        got = seqs_of(drain(self.sub, 500), self.stream)
        assert got == sorted(got), "good frames out of order"
        fresh = sorted(set(got) - {self.first - 1})  # the newest before: cached, re-sent
        assert fresh == list(range(self.first, last + 1)), "good frames lost"
        return got


def test_fuzz_ingest(capsys):
    """Bad frame messages from one producer; another producer's frames flow unharmed."""
    broker, thread = start_broker()
    try:
        with Peers() as peers:
            good = GoodStream(broker, peers)
            bad = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
            publish_until_seen(broker, bad, "probe/fuzz")  # the bad PUB's link is up
            sent = generate(bad_frame, frame_reason)
            for i, (data, _) in enumerate(sent):
                bad.send(data)
                if i % GOOD_EVERY == 0:
                    good.send()
            oversize = peers.socket(zmq.PUB, broker.ingest_endpoint)
            publish_until_seen(broker, oversize, "probe/big")
            oversize.send(frame("probe/big", 10**6)[:10] + bytes(MAX_FRAME + 1))
            expected = collections.Counter(why for _, why in sent)
            wait_until(lambda: broker.stats().malformed == N, what=f"{N} malformed frames")
            good.check()
            wait_until(lambda: broker.stats().disconnects >= 1, what="the oversize sender cut off")
            stats = broker.stats()
            assert stats.malformed_by_kind == dict(expected)
            assert {s.stream for s in broker.streams()} == {"good/cam", "probe/fuzz", "probe/big"}
            assert stats.rejected_by_reason == {}
        assert thread.is_alive()
    finally:
        broker.close()
    assert not thread.is_alive()
    with capsys.disabled():
        report("ingest (SUB)", N, expected)


PROBE = b"fzprobe"  # the flood socket subscribes to this first, to know its link is up


def publish_messages(
    rng: random.Random, limit: int
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
    for _ in range(N):
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


def test_fuzz_publish_subscriptions(capsys):
    """Subscription floods and junk from a raw XSUB; the good subscriber's frames go on."""
    limit = 200
    broker, thread = start_broker(max_subscriptions=limit)
    try:
        with Peers() as peers:
            good = GoodStream(broker, peers)
            messages, want = publish_messages(random.Random(SEED), limit)
            flood = peers.socket(zmq.XSUB, broker.publish_endpoint, sndhwm=0)
            flood.send(b"\x01" + PROBE)  # an XSUB sends its subscriptions when it connects
            wait_until(lambda: broker.stats().subscription_prefixes == 2, what="the probe")
            base = broker.stats()
            for i, msg in enumerate(messages):
                flood.send(msg)
                if i % GOOD_EVERY == 0:
                    good.send()
            big = peers.socket(zmq.XSUB, broker.publish_endpoint)
            big.send(b"\x01fz" + bytes(1000))  # over --max-subscription-size: cut off
            wait_until(
                lambda: broker.stats().subscriptions == base.subscriptions + want["subscriptions"],
                what="every subscription",
            )
            wait_until(lambda: broker.stats().unsubscriptions == want["unsubscriptions"])
            got = good.check()
            stats = broker.stats()
            rejected = stats.rejected_by_reason
            assert rejected["subscription_invalid"] == want["subscription_invalid"]
            assert rejected.get("subscription_limit", 0) == want["subscription_limit"]
            assert stats.subscription_prefixes == want["prefixes"]
            repeats = len(got) - len(set(got))  # cached frames re-sent to everyone
            assert repeats <= stats.cache_sends
            assert stats.cache_sends <= 4 * (1 + stats.uptime_s), "a flood was amplified"
        assert thread.is_alive()
    finally:
        broker.close()
    assert not thread.is_alive()
    by_reason = collections.Counter(
        {k: v for k, v in want.items() if k not in ("prefixes", "subscriptions")}
    )
    by_reason["subscribe"] = want["subscriptions"]
    by_reason["cache_rate_limited"] = rejected.get("cache_rate", 0) + rejected.get(
        "cache_scan_rate", 0
    )
    with capsys.disabled():
        report("publish (XPUB)", N, by_reason)


def test_fuzz_control(capsys):
    """Junk requests and envelopes from a DEALER; every one answered or counted, ping works."""
    broker, thread = start_broker()
    try:
        with Peers() as peers:
            dealer = peers.socket(zmq.DEALER, broker.control_endpoint)
            sent = generate(lambda rng, _: bad_control(rng), lambda m: control_reason(m) or "ok")
            window = 8  # well below the control socket's queue (64) each way
            replies = 0
            for start in range(0, N, window):
                batch = sent[start : start + window]
                for parts, _ in batch:
                    dealer.send_multipart(parts)
                for parts, why in batch:
                    if why == "control_envelope":
                        continue
                    assert dealer.poll(5000), "a control message got no reply"
                    reply = dealer.recv_multipart()
                    assert reply[:-1] == parts[:-1]  # the envelope comes back
                    assert protocol.decode_reply(reply[-1])["ok"] is (why == "ok")
                    replies += 1
            oversize = peers.socket(zmq.DEALER, broker.control_endpoint)
            oversize.send(bytes(65 * 1024))
            assert not oversize.poll(300), "an oversize control request was answered"
            req = peers.socket(zmq.REQ, broker.control_endpoint)
            req.send(protocol.encode_request("ping"))
            assert req.poll(5000) and protocol.decode_reply(req.recv())["ok"] is True
            expected = collections.Counter(why for _, why in sent)
            expected["answered_ok"] = expected.pop("ok", 0)
            stats = broker.stats()
            assert stats.control_requests == N + 1
            assert stats.control_errors == replies - expected["answered_ok"]
            assert stats.rejected_by_reason == {
                k: v for k, v in expected.items() if k != "answered_ok"
            }
        assert thread.is_alive()
    finally:
        broker.close()
    assert not thread.is_alive()
    with capsys.disabled():
        report("control (ROUTER)", N, expected)


# --- the sink ------------------------------------------------------------------------------


def stored(db: Path, consumer: str) -> list[int]:
    with sqlite3.connect(db) as conn:
        rows = conn.execute("SELECT seq FROM results WHERE consumer = ? ORDER BY seq", (consumer,))
        return [seq for (seq,) in rows]


def test_fuzz_results(tmp_path, capsys):
    """Junk PUSHed to the results port; every good result PUSHed alongside is stored once."""
    db = tmp_path / "results.sqlite"
    running = RunningSink(db, max_message_size=MAX_RESULT)
    try:
        with Peers() as peers:
            bad = peers.socket(zmq.PUSH, running.sink.results_endpoint)
            good = peers.socket(zmq.PUSH, running.sink.results_endpoint)
            sent = generate(
                bad_result, lambda parts: "multipart" if len(parts) > 1 else result_reason(parts[0])
            )
            n_good = 0
            for i, (parts, _) in enumerate(sent):
                bad.send_multipart(parts)
                if i % GOOD_EVERY == 0:
                    good.send(encode_result(result(n_good)))
                    n_good += 1
            big = peers.socket(zmq.PUSH, running.sink.results_endpoint)
            big.send(bytes(MAX_RESULT + 1))  # over --max-message-size: cut off
            expected = collections.Counter(why for _, why in sent)
            sink = running.sink
            wait_until(lambda: sink.stats().malformed == N, what=f"{N} malformed results")
            wait_until(lambda: sink.stats().stored == n_good, what="every good result")
            stats = sink.stats()
            assert stats.malformed_by_reason == dict(expected)
            assert stored(db, "good") == list(range(n_good)) and stored(db, "fuzz") == []
            assert running.thread.is_alive() and running.errors == []
    finally:
        running.close()
    with capsys.disabled():
        report("results (PULL)", N, expected)


def test_fuzz_acked_results(tmp_path, capsys):
    """Junk sent to the acknowledged results port; good results are acked and stored once."""
    db = tmp_path / "results.sqlite"
    running = RunningSink(db, max_message_size=MAX_RESULT)
    try:
        with Peers() as peers:
            endpoint = running.sink.acked_results_endpoint
            assert endpoint
            bad = peers.socket(zmq.DEALER, endpoint, sndhwm=0)
            good = peers.socket(zmq.DEALER, endpoint)
            sent = generate(
                bad_result, lambda parts: "envelope" if len(parts) > 1 else result_reason(parts[0])
            )
            n_good = 0
            for i, (parts, _) in enumerate(sent):
                bad.send_multipart(parts)
                if i % GOOD_EVERY == 0:  # each good result twice: a resend is stored once
                    for _ in range(2):
                        good.send(encode_result(result(n_good, delivery=n_good + 1)))
                    n_good += 1
            expected = collections.Counter(why for _, why in sent)
            sink = running.sink
            acked: set[int] = set()

            def all_acked() -> bool:
                while good.poll(10):
                    acked.update(protocol.decode_ack(good.recv()))
                return acked == set(range(1, n_good + 1))

            wait_until(all_acked, what="every good result acknowledged")
            wait_until(lambda: sink.stats().malformed == N, what=f"{N} malformed results")
            stats = sink.stats()
            assert stats.malformed_by_reason == dict(expected)
            assert stats.duplicates == n_good
            assert stored(db, "good") == list(range(n_good)) and stored(db, "fuzz") == []
            drain(bad, 100)  # acknowledgements of malformed results with a readable id
            assert running.thread.is_alive() and running.errors == []
    finally:
        running.close()
    with capsys.disabled():
        report("acked results (ROUTER)", N, expected)
