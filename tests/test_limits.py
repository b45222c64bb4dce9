"""Resource bounds: streams, subscriptions, cached bytes, cache re-sends, control and sink input.

Pure tests of broker/limits.py, broker/subscriptions.py and the registry's bounds, then
real sockets: a limit reached is refused with a count and a log line, and the broker
(or sink) keeps serving good traffic.
"""

from __future__ import annotations

import argparse
import logging
import time

import msgpack
import pytest
import zmq
from prometheus_client import CollectorRegistry, generate_latest

from framebroker import control, control_protocol, protocol
from framebroker.broker.cli import add_broker_arguments, broker_config
from framebroker.broker.limits import (
    MAX_CONTROL_PARTS,
    BrokerLimits,
    CacheSendLimiter,
    TokenBucket,
)
from framebroker.broker.metrics import BrokerCollector
from framebroker.broker.registry import StreamRegistry
from framebroker.broker.stats import Counters
from framebroker.broker.subscriptions import Subscriptions
from framebroker.errors import ConfigError
from framebroker.protocol import encode_result, topic_for
from framebroker.ratelimit import RateLimitedLog
from framebroker.sink.metrics import SinkCollector
from tests.conftest import wait_until
from tests.hostile import (
    Peers,
    RunningSink,
    drain,
    frame,
    header,
    publish_until_seen,
    result,
    running_broker,
    seqs_of,
)

NS = 1_000_000_000


def exposition(collector) -> str:
    """The Prometheus text of one collector (registering it checks for duplicate names)."""
    registry = CollectorRegistry()
    registry.register(collector)
    return generate_latest(registry).decode()


# --- pure --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "fields",
    [
        {"max_streams": 0},
        {"max_subscriptions": 0},
        {"cache_budget": -1},
        {"cache_send_rate": 0},
        {"max_subscription_size": 201},
        {"max_control_size": 100},
    ],
)
def test_limits_reject_bad_values(fields):
    with pytest.raises(ConfigError):
        BrokerLimits(**fields)


def test_limits_come_from_flags_and_environment(monkeypatch):
    monkeypatch.setenv("FRAMEBROKER_MAX_STREAMS", "5")
    monkeypatch.setenv("FRAMEBROKER_CACHE_SEND_RATE", "0.5")
    parser = argparse.ArgumentParser()
    add_broker_arguments(parser)
    args = parser.parse_args(["--cache-budget", "10M", "--max-subscription-size", "1k"])
    limits = broker_config(args).limits
    assert limits == BrokerLimits(
        max_streams=5, cache_budget=10 << 20, cache_send_rate=0.5, max_subscription_size=1024
    )
    assert broker_config(parser.parse_args([])).limits.max_control_size == 64 << 10


def test_token_bucket_and_cache_send_limiter():
    bucket = TokenBucket(rate=2.0, burst=2.0, now=0)
    assert [bucket.take(0) for _ in range(3)] == [True, True, False]
    assert bucket.take(NS // 2) and not bucket.take(NS // 2)  # 2 per second
    limiter = CacheSendLimiter(send_rate=4.0, scan_rate=3.0)
    counters = Counters()
    entries = [type("E", (), {"stream": s})() for s in ("a", "b")]
    sent = [len(list(limiter.select(entries, 0, counters))) for _ in range(5)]
    assert sent == [2, 2, 2, 0, 0]  # the third lookup; the rest: lookups over their rate
    assert counters.rejected_by_reason == {"cache_scan_rate": 2}
    later = 10 * NS
    sent = [len(list(limiter.select(entries, later + i, counters))) for i in range(3)]
    assert sent == [2, 2, 2] and "cache_rate" not in counters.rejected_by_reason
    assert len(limiter) == 2
    limiter.prune(later + 100 * NS)
    assert len(limiter) == 0


def test_cache_send_limiter_bounds_each_stream():
    limiter = CacheSendLimiter(send_rate=4.0, scan_rate=1e6)
    counters = Counters()
    entry = type("E", (), {"stream": "cam1"})()
    sent = sum(len(list(limiter.select([entry], i, counters))) for i in range(1000))
    assert sent == 4 and counters.rejected_by_reason == {"cache_rate": 996}


def test_subscriptions_are_bounded_and_checked(caplog):
    counters = Counters()
    subs = Subscriptions(3, counters, RateLimitedLog(logging.getLogger("t")))
    assert [subs.accept(b"\x01" + p) for p in (b"a", b"b", b"a", b"c", b"d")] == [
        b"a",
        b"b",
        b"a",
        b"c",
        None,
    ]
    assert subs.accept(b"") is None and subs.accept(b"\x07junk") is None
    assert subs.accept(b"\x00a") is None  # unsubscribe: frees a place
    assert subs.accept(b"\x01d") == b"d" and len(subs) == 3
    assert (counters.subscriptions, counters.unsubscriptions) == (6, 1)
    assert counters.rejected_by_reason == {"subscription_limit": 1, "subscription_invalid": 2}
    assert "--max-subscriptions" in caplog.text
    small = Subscriptions(3, counters, RateLimitedLog(logging.getLogger("t")), max_size=10)
    assert small.accept(b"\x01" + b"x" * 10) is None and small.accept(b"\x01cam") == b"cam"
    assert counters.rejected_by_reason["subscription_oversize"] == 1


def test_registry_admits_at_most_max_streams_and_forgets_stale_ones_when_full():
    reg = StreamRegistry(stale_after=1.0, max_streams=2)
    t0 = 1000 * NS
    for name in ("a", "b"):
        assert reg.admit(name)
        reg.observe(header(name), 100, t0, "frame")
    assert reg.full() and not reg.admit("c") and reg.refused() == {"stream_limit": 1}
    reg.observe(header("a", 1), 100, t0 + 2 * NS, "frame")  # a stays live, b goes stale
    reg.expire(t0 + 2 * NS)
    assert [i.stream for i in reg.snapshot(t0 + 2 * NS)] == ["a"] and reg.forgotten == 1
    assert reg.admit("c")


def test_registry_cache_budget_is_never_exceeded():
    reg = StreamRegistry(stale_after=1.0, cache_budget=250)
    t0 = 1000 * NS
    for seq in range(3):
        for name in ("a", "b", "c"):
            reg.observe(header(name, seq), 100, t0 + seq, f"{name}{seq}")
            assert reg.cached_bytes <= 250
    cached = {e.stream: e.cached for e in reg.matching(b"", t0 + 3)}
    assert len(cached) == 2 and reg.cached_bytes == 200  # one stream's frame did not fit
    assert reg.refused()["cache_budget"] >= 1
    reg.expire(t0 + 2 * NS)  # stale: cached frames released, their bytes given back
    assert reg.cached_bytes == 0
    off = StreamRegistry(stale_after=1.0, cache_budget=0)  # no cache at all, as asked
    off.observe(header("a"), 100, t0, "frame")
    assert list(off.matching(b"", t0)) == [] and off.refused() == {}


# --- the broker, real sockets --------------------------------------------------------------


def test_stream_limit_refuses_new_streams_and_keeps_serving_known_ones(caplog):
    limits = BrokerLimits(max_streams=3)
    with running_broker(limits=limits) as broker, Peers() as peers:
        sub = peers.sub(broker.publish_endpoint)
        pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        for name in ("a", "b", "c"):
            publish_until_seen(broker, pub, name)
        drain(sub)
        for i in range(20):
            pub.send(frame(f"extra{i}", 0))
        for seq in range(100, 110):
            pub.send(frame("a", seq))
        wait_until(
            lambda: broker.stats().rejected_by_reason.get("stream_limit") == 20,
            what=f"20 refused frames: {broker.stats()}",
        )
        got = drain(sub)
        assert seqs_of(got, "a") == list(range(100, 110))
        assert {protocol.decode_frame(m).header.stream for m in got} == {"a"}
        assert [s.stream for s in broker.streams()] == ["a", "b", "c"]
        stats = control.request(broker.control_endpoint, "stats")
        assert stats["rejected_by_reason"]["stream_limit"] == 20
        text = exposition(BrokerCollector(broker))
        assert 'framebroker_broker_dropped_total{reason="stream_limit"} 20.0' in text
        assert "framebroker_broker_cached_bytes " in text
        assert "framebroker_broker_subscription_prefixes 1.0" in text
    assert "--max-streams" in caplog.text


def test_stale_streams_make_room_when_the_registry_is_full():
    fields = {"stale_after": 0.3, "forget_after": 0.0, "limits": BrokerLimits(max_streams=2)}
    with running_broker(**fields) as b, Peers() as peers:
        pub = peers.socket(zmq.PUB, b.ingest_endpoint, sndhwm=0)
        publish_until_seen(b, pub, "a")
        publish_until_seen(b, pub, "b")
        # full: once stale they are forgotten at once, not after --forget-after (never)
        wait_until(lambda: b.stats().streams_forgotten == 2, what="stale streams forgotten")
        publish_until_seen(b, pub, "c")
        assert [s.stream for s in b.streams()] == ["c"]
        assert b.stats().streams_forgotten == 2


def test_cache_budget_bounds_cached_frames():
    with running_broker(limits=BrokerLimits(cache_budget=100)) as broker, Peers() as peers:
        pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        publish_until_seen(broker, pub, "cam1")  # a frame is ~200 bytes: over the budget
        late = peers.sub(broker.publish_endpoint, topic_for("cam1"))
        wait_until(lambda: broker.stats().subscriptions >= 1)
        assert not late.poll(300), "a frame over the cache budget was cached"
        stats = broker.stats()
        assert stats.cached_bytes == 0 and stats.cache_sends == 0
        assert stats.rejected_by_reason["cache_budget"] >= 1
        pub.send(frame("cam1", 1000))  # still forwarded
        assert late.poll(5000) and protocol.decode_frame(late.recv()).header.seq == 1000


def test_subscription_flood_is_not_amplified_and_good_subscribers_go_on():
    rate = 4.0
    with running_broker(limits=BrokerLimits(cache_send_rate=rate)) as broker, Peers() as peers:
        good = peers.sub(broker.publish_endpoint)
        pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        last = publish_until_seen(broker, pub, "cam1")
        drain(good)
        flood = peers.socket(zmq.XSUB, broker.publish_endpoint, sndhwm=0)
        before = broker.stats()
        start = time.monotonic()
        for _ in range(3000):  # every one matches cam1: each could re-send its cached frame
            flood.send(b"\x01")
        wait_until(lambda: broker.stats().subscriptions >= before.subscriptions + 3000)
        elapsed = time.monotonic() - start
        stats = broker.stats()
        resent = stats.cache_sends - before.cache_sends
        assert resent <= rate + rate * elapsed + 1, (resent, elapsed)
        duplicates = seqs_of(drain(good), "cam1")
        assert duplicates == [last] * len(duplicates) and len(duplicates) <= resent
        limited = sum(stats.rejected_by_reason.get(r, 0) for r in ("cache_rate", "cache_scan_rate"))
        assert limited >= 3000 - resent
        for seq in range(last + 1, last + 11):
            pub.send(frame("cam1", seq))
        assert seqs_of(drain(good), "cam1") == list(range(last + 1, last + 11))


def test_distinct_subscriptions_are_bounded_and_bad_ones_counted():
    with running_broker(limits=BrokerLimits(max_subscriptions=50)) as broker, Peers() as peers:
        flood = peers.socket(zmq.XSUB, broker.publish_endpoint, sndhwm=0)
        for i in range(200):
            flood.send(b"\x01zz%03d" % i)
        flood.send(b"")
        flood.send(b"\x07not a subscription")
        wait_until(lambda: broker.stats().subscriptions == 200)
        wait_until(lambda: broker.stats().rejected_by_reason.get("subscription_invalid") == 2)
        stats = broker.stats()
        assert stats.subscription_prefixes == 50
        assert stats.rejected_by_reason["subscription_limit"] == 150
        for i in range(10):  # unsubscribing frees places
            flood.send(b"\x00zz%03d" % i)
        wait_until(lambda: broker.stats().subscription_prefixes == 40)
        sub = peers.sub(broker.publish_endpoint, topic_for("cam1"))
        pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        wait_until(lambda: broker.stats().subscription_prefixes == 41)
        publish_until_seen(broker, pub, "cam1")
        assert sub.poll(5000)


def test_oversize_subscription_disconnects_that_subscriber_only():
    with running_broker() as broker, Peers() as peers:
        good = peers.sub(broker.publish_endpoint, b"cam")
        peers.sub(broker.publish_endpoint, b"x" * 600)  # over the socket's 512 bytes
        peers.sub(broker.publish_endpoint, b"y" * 300)  # over --max-subscription-size only
        pub = peers.socket(zmq.PUB, broker.ingest_endpoint, sndhwm=0)
        last = publish_until_seen(broker, pub, "cam1")
        pub.send(frame("cam1", last + 1))
        assert last + 1 in seqs_of(drain(good), "cam1")
        # the 600-byte one never arrived; the 300-byte one was refused by the broker
        wait_until(lambda: broker.stats().rejected_by_reason.get("subscription_oversize") == 1)
        assert broker.stats().subscription_prefixes == 1


def test_control_messages_with_too_many_parts_are_dropped_unanswered():
    with running_broker() as broker, Peers() as peers:
        dealer = peers.socket(zmq.DEALER, broker.control_endpoint)
        dealer.send_multipart([b"x"] * 20 + [control_protocol.encode_request("ping")])
        dealer.send_multipart(
            [b""] * (MAX_CONTROL_PARTS - 2) + [control_protocol.encode_request("ping")]
        )
        assert dealer.poll(5000)
        parts = dealer.recv_multipart()  # only the second one is answered
        assert (
            len(parts) == MAX_CONTROL_PARTS - 1 and control_protocol.decode_reply(parts[-1])["ok"]
        )
        assert not dealer.poll(200)
        dealer.send(msgpack.packb({"v": [7, 0], "op": "ping"}))
        assert dealer.poll(5000) and control_protocol.decode_reply(dealer.recv())["ok"] is False
        stats = broker.stats()
        assert stats.rejected_by_reason == {"control_envelope": 1, "control_version": 1}
        assert control.request(broker.control_endpoint, "ping")["ok"] is True


# --- the sink ------------------------------------------------------------------------------


def test_sink_counts_bad_messages_by_reason_and_stores_the_good(tmp_path):
    running = RunningSink(tmp_path / "r.sqlite")
    try:
        sink = running.sink
        with Peers() as peers:
            push = peers.socket(zmq.PUSH, sink.results_endpoint)
            dealer = peers.socket(zmq.DEALER, sink.acked_results_endpoint or "")
            good = encode_result(result(1))
            push.send_multipart([good, good])  # multipart: not a result message
            push.send(b"\xc1")
            push.send(msgpack.packb({**result(2).to_map(), "v": [3, 0]}))
            push.send(msgpack.packb({**result(3).to_map(), "seq": 2**64 - 1}))
            dealer.send_multipart([b"", encode_result(result(4, delivery=1))])  # REQ-style
            push.send(good)
            dealer.send(encode_result(result(5, delivery=2)))
            assert dealer.poll(5000) and protocol.decode_ack(dealer.recv()) == [2]
            wait_until(lambda: sink.stats().stored == 2)
        stats = sink.stats()
        assert stats.malformed_by_reason == {
            "multipart": 1,
            "invalid": 1,
            "version": 1,
            "unstorable": 1,
            "envelope": 1,
        }
        assert stats.malformed == 5 and running.errors == []
        text = exposition(SinkCollector(sink))
        assert 'framebroker_sink_malformed_by_reason_total{reason="multipart"} 1.0' in text
        assert "framebroker_sink_malformed_total 5.0" in text
    finally:
        running.close()
