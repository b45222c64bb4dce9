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
import os
import random
import threading
from pathlib import Path
from typing import Any

import pytest
import zmq

from framebroker import control_protocol, protocol
from framebroker.broker import Broker, BrokerConfig
from framebroker.broker.limits import BrokerLimits
from framebroker.protocol import encode_result, topic_for
from tests.conftest import query_db, wait_until
from tests.fuzz_messages import (
    PROBE,
    bad_control,
    bad_frame,
    bad_result,
    control_reason,
    frame_reason,
    generate,
    publish_messages,
    result_reason,
)
from tests.hostile import (
    LOOPBACK,
    Peers,
    RunningSink,
    drain,
    frame,
    publish_until_seen,
    result,
    seqs_of,
)

N = int(os.environ.get("FRAMEBROKER_FUZZ_N", "10000"))
SEED = int(os.environ.get("FRAMEBROKER_FUZZ_SEED", "20240611"))
GOOD_EVERY = 10  # one good message from the other peer per this many bad ones
MAX_FRAME = 64 << 10  # the broker's --max-message-size in these tests
MAX_RESULT = 64 << 10  # the sink's

pytestmark = pytest.mark.slow


def report(socket: str, n: int, by_reason: collections.Counter[str]) -> None:
    print(f"\nfuzz {socket}: {n} messages, by reason {dict(sorted(by_reason.items()))}, crashes 0")


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
    return broker, broker.run_in_thread().thread


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
            sent = generate(bad_frame, frame_reason, N, SEED)
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


def test_fuzz_publish_subscriptions(capsys):
    """Subscription floods and junk from a raw XSUB; the good subscriber's frames go on."""
    limit = 200
    broker, thread = start_broker(max_subscriptions=limit)
    try:
        with Peers() as peers:
            good = GoodStream(broker, peers)
            messages, want = publish_messages(random.Random(SEED), limit, N)
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
            sent = generate(
                lambda rng, _: bad_control(rng), lambda m: control_reason(m) or "ok", N, SEED
            )
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
                    assert control_protocol.decode_reply(reply[-1])["ok"] is (why == "ok")
                    replies += 1
            oversize = peers.socket(zmq.DEALER, broker.control_endpoint)
            oversize.send(bytes(65 * 1024))
            assert not oversize.poll(300), "an oversize control request was answered"
            req = peers.socket(zmq.REQ, broker.control_endpoint)
            req.send(control_protocol.encode_request("ping"))
            assert req.poll(5000) and control_protocol.decode_reply(req.recv())["ok"] is True
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
    sql = "SELECT seq FROM results WHERE consumer = ? ORDER BY seq"
    return [seq for (seq,) in query_db(db, sql, consumer)]


def test_fuzz_results(tmp_path, capsys):
    """Junk PUSHed to the results port; every good result PUSHed alongside is stored once."""
    db = tmp_path / "results.sqlite"
    running = RunningSink(db, max_message_size=MAX_RESULT)
    try:
        with Peers() as peers:
            bad = peers.socket(zmq.PUSH, running.sink.results_endpoint)
            good = peers.socket(zmq.PUSH, running.sink.results_endpoint)
            sent = generate(
                bad_result,
                lambda parts: "multipart" if len(parts) > 1 else result_reason(parts[0]),
                N,
                SEED,
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
                bad_result,
                lambda parts: "envelope" if len(parts) > 1 else result_reason(parts[0]),
                N,
                SEED,
            )
            n_good = 0
            for i, (parts, _) in enumerate(sent):
                bad.send_multipart(parts)
                if i % GOOD_EVERY == 0:  # each good result twice: a resend is stored once
                    for _ in range(2):
                        good.send(encode_result(result(n_good, delivery=n_good + 1)))
                    n_good += 1
            big = peers.socket(zmq.DEALER, endpoint)
            big.send(bytes(MAX_RESULT + 1))  # over --max-message-size: cut off
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
