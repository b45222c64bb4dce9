"""The broker: forwarding, last value cache, registry, bad input, control (real sockets)."""

from __future__ import annotations

import struct
import time

import msgpack
import pytest
import zmq

from framebroker import control, control_protocol, protocol
from framebroker.broker import Broker, BrokerConfig, StreamRegistry
from framebroker.capabilities import PROTOCOL_VERSION
from framebroker.errors import ConfigError, TransportError
from framebroker.protocol import FrameHeader, encode_frame, topic_for
from tests.conftest import free_port, wait_until

LOOPBACK = "tcp://127.0.0.1:0"
NS = 1_000_000_000


def header(stream: str = "cam1", seq: int = 0, **overrides) -> FrameHeader:
    fields = dict(
        stream=stream,
        session=7,
        seq=seq,
        t_capture=time.time_ns(),
        t_publish=time.time_ns(),
        encoding="raw",
        shape=(4, 6, 3),
        dtype="uint8",
        pixfmt="bgr24",
    )
    fields.update(overrides)
    return FrameHeader(**fields)


JPEG = b"\xff\xd8" + bytes(70)  # starts like a JPEG file: passes the payload check


def frame(stream: str = "cam1", seq: int = 0, payload: bytes = bytes(72), **kw) -> bytes:
    """A valid frame: a raw payload of another size than 72 gets the shape (1, size)."""
    if kw.get("encoding") == "jpeg" and not payload.startswith(b"\xff\xd8"):
        payload = JPEG
    elif "shape" not in kw and len(payload) != 72:
        kw.update(shape=(1, len(payload)), pixfmt="gray8")
    return encode_frame(header(stream, seq, **kw), payload)


@pytest.fixture
def ctx():
    context = zmq.Context()
    sockets: list[zmq.Socket] = []

    def make(kind: int, endpoint: str, subscribe: bytes | None = None) -> zmq.Socket:
        sock = context.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        sockets.append(sock)
        if subscribe is not None:
            sock.setsockopt(zmq.SUBSCRIBE, subscribe)
        sock.connect(endpoint)
        return sock

    yield make
    for sock in sockets:
        sock.close(linger=0)
    context.term()


def make_broker(**overrides) -> Broker:
    fields = dict(ingest=LOOPBACK, publish=LOOPBACK, control=LOOPBACK, log_stats=0.0)
    fields.update(overrides)
    return Broker(BrokerConfig(**fields))


@pytest.fixture
def broker():
    with make_broker().run_in_thread() as b:
        yield b


def publish_until_seen(broker: Broker, pub: zmq.Socket, stream: str, payload=bytes(72), **kw):
    """Send frames seq 0, 1, ... until the broker registered one; return the last seq sent.

    A fresh PUB drops frames until the broker's subscription reaches it (slow joiner).
    """
    seq = 0
    while True:
        pub.send(frame(stream, seq, payload, **kw))
        if newest_seq(broker, stream) is not None:
            return seq
        seq += 1
        assert seq < 500, f"broker never saw stream {stream}"
        time.sleep(0.01)


def newest_seq(broker: Broker, stream: str) -> int | None:
    for info in broker.streams():
        if info.stream == stream:
            return info.seq
    return None


def recv_frames(sub: zmq.Socket, timeout_ms: int = 300) -> list[bytes]:
    out = []
    while sub.poll(timeout_ms):
        out.append(sub.recv())
    return out


# --- forwarding and the last value cache ----------------------------------------------


def test_frames_are_forwarded_byte_identical(broker, ctx):
    sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=b"")
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    wait_until(lambda: broker.stats().subscriptions >= 1, what="subscription")
    big = bytes(range(256)) * 1024  # 256 KiB: above zmq.COPY_THRESHOLD, the zero-copy path
    sent = {}
    seq = 0
    while not sub.poll(20):  # until the path producer -> broker -> subscriber is up
        sent[seq] = frame("cam1", seq, big)
        pub.send(sent[seq])
        seq += 1
        assert seq < 500
    for _ in range(5):
        sent[seq] = frame("cam1", seq, big)
        pub.send(sent[seq])
        seq += 1
    received = {}
    for data in recv_frames(sub):
        received[protocol.decode_frame(data).header.seq] = data
    assert max(received) == seq - 1
    assert all(received[s] == sent[s] for s in received)
    stats = broker.stats()
    assert stats.frames_out == stats.frames_in >= 6
    assert stats.bytes_in == stats.frames_in * len(sent[0])


def test_late_subscriber_gets_cached_newest_frame(broker, ctx):
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    last = publish_until_seen(broker, pub, "cam1")
    wait_until(lambda: newest_seq(broker, "cam1") == last, what="last frame at the broker")
    # The producer has stopped: only the cache can deliver a frame now.
    sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=topic_for("cam1"))
    assert sub.poll(5000), "late subscriber got no cached frame"
    msg = protocol.decode_frame(sub.recv())
    assert (msg.header.stream, msg.header.seq) == ("cam1", last)
    stats = broker.stats()
    assert stats.cache_sends == 1, (stats.subscriptions, stats.cache_sends)


def test_prefix_and_exact_subscriptions_get_matching_cached_streams(broker, ctx):
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    streams = ("site1/a", "site1/b", "site10/x", "cam1", "cam10")
    for stream in streams:
        publish_until_seen(broker, pub, stream)

    def cached_for(subscription: bytes) -> set[str]:
        before = broker.stats().cache_sends
        sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=subscription)
        got: set[str] = set()
        while sub.poll(300):
            got.add(protocol.decode_frame(sub.recv()).header.stream)
        sub.close(linger=0)
        return got if broker.stats().cache_sends - before == len(got) else {"<mismatch>"}

    assert cached_for(b"site1/") == {"site1/a", "site1/b"}
    assert cached_for(topic_for("cam1")) == {"cam1"}
    assert cached_for(topic_for("cam10")) == {"cam10"}
    assert cached_for(b"") == set(streams)


def test_repeated_subscription_is_seen_and_served(broker, ctx):
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    last = publish_until_seen(broker, pub, "cam1")
    wait_until(lambda: newest_seq(broker, "cam1") == last, what="last frame at the broker")
    for _ in range(2):  # the same subscription twice: XPUB_VERBOSE passes both up
        sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=topic_for("cam1"))
        assert sub.poll(5000)
        assert protocol.decode_frame(sub.recv()).header.seq == last
    assert broker.stats().cache_sends >= 2


# --- registry through the control port and staleness ---------------------------------


def test_stream_listing_and_stale_streams_are_not_cached():
    with make_broker(stale_after=0.5).run_in_thread() as broker:
        context = zmq.Context()
        pub = context.socket(zmq.PUB)
        sub = None
        try:
            pub.connect(broker.ingest_endpoint)
            publish_until_seen(broker, pub, "cam1")
            publish_until_seen(
                broker, pub, "site/cam2", encoding="jpeg", shape=(480, 640), pixfmt="gray8"
            )
            for seq in range(100, 103):
                pub.send(frame("cam1", seq))
            wait_until(lambda: newest_seq(broker, "cam1") == 102, what="frames")
            reply = control.request(broker.control_endpoint, "streams")
            assert reply["ok"] is True
            by_id = {s["stream"]: s for s in reply["streams"]}
            assert set(by_id) == {"cam1", "site/cam2"}
            cam1, cam2 = by_id["cam1"], by_id["site/cam2"]
            assert (cam1["state"], cam1["encoding"], cam1["shape"]) == ("live", "raw", [4, 6, 3])
            assert (cam1["dtype"], cam1["pixfmt"], cam1["session"]) == ("uint8", "bgr24", 7)
            assert cam1["frames"] >= 4 and cam1["bytes"] == cam1["frames"] * len(frame())
            assert (cam2["encoding"], cam2["shape"], cam2["pixfmt"]) == (
                "jpeg",
                [480, 640],
                "gray8",
            )
            assert cam1["last_seen"] >= cam1["first_seen"] > 0 and cam1["age_s"] >= 0

            wait_until(
                lambda: all(s.state == "stale" for s in broker.streams()), what="stale streams"
            )
            assert broker.stats().streams_stale == 2
            before = broker.stats()
            sub = context.socket(zmq.SUB)
            sub.setsockopt(zmq.SUBSCRIBE, b"")
            sub.connect(broker.publish_endpoint)
            wait_until(lambda: broker.stats().subscriptions > before.subscriptions, what="sub")
            assert not sub.poll(200), "a stale stream's frame was sent to a new subscriber"
            assert broker.stats().cache_sends == before.cache_sends

            pub.send(frame("cam1", 200))  # the producer is back: live again, and forwarded
            assert sub.poll(5000)
            assert protocol.decode_frame(sub.recv()).header.seq == 200
            wait_until(lambda: broker.stats().streams_live == 1, what="live again")
        finally:
            pub.close(linger=0)
            if sub is not None:
                sub.close(linger=0)
            context.term()


# --- bad input --------------------------------------------------------------------------


def raw_message(topic: bytes, major: int, header_map, payload: bytes = b"px") -> bytes:
    packed = msgpack.packb(header_map)
    return topic + b"\x00" + bytes([major]) + struct.pack(">I", len(packed)) + packed + payload


def test_malformed_messages_are_counted_dropped_and_broker_keeps_forwarding(broker, ctx):
    sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=b"")
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    wait_until(lambda: broker.stats().subscriptions >= 1, what="subscription")
    publish_until_seen(broker, pub, "cam1")
    recv_frames(sub, 100)
    good = frame("cam1", 1000)
    bad = {
        "no_terminator": b"garbage without a terminator",
        "version": b"cam1\x00\x02" + good[6:],
        "truncated": good[:12],
        "header": b"cam1\x00\x01\x00\x00\x00\x03\xc1\xc1\xc1pixels",  # 0xc1: never msgpack
        "topic_mismatch": raw_message(b"cam2", 1, header("cam1").to_map()),
    }
    for data in bad.values():
        pub.send(data)
    pub.send(good)
    wait_until(lambda: broker.stats().malformed == len(bad), what="malformed counts")
    assert broker.stats().malformed_by_kind == dict.fromkeys(bad, 1)
    received = recv_frames(sub)
    assert received[-1] == good
    for data in received:  # setup frames may still trickle in; nothing malformed does
        assert protocol.decode_frame(data).header.stream == "cam1"
    assert newest_seq(broker, "cam1") == 1000


def test_each_part_of_a_multipart_message_is_rejected_as_malformed(broker, ctx):
    """A frame message is one ZeroMQ frame: two valid frames sent as the parts of one
    message are neither forwarded nor cached, and the message counts once (multipart)."""
    sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=b"")
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    wait_until(lambda: broker.stats().subscriptions >= 1, what="subscription")
    publish_until_seen(broker, pub, "cam1")
    recv_frames(sub, 100)
    pub.send_multipart([frame("multi", 0), frame("multi", 1)])
    pub.send_multipart([frame("cam1", 3000), frame("cam1", 0), b"junk"])
    good = frame("cam1", 3001)
    pub.send(good)
    wait_until(lambda: newest_seq(broker, "cam1") == 3001, what="the frame after them")
    stats = broker.stats()
    assert stats.malformed_by_kind == {"multipart": 2} and stats.malformed == 2
    assert newest_seq(broker, "multi") is None
    received = recv_frames(sub)
    assert received[-1] == good
    assert [protocol.decode_frame(d).header.seq for d in received if d != good] == []


def test_a_pub_loses_frames_sent_before_the_subscription_and_the_documented_check_works(ctx):
    """docs/protocol.md "Sending frames": what a PUB sends before the broker's subscription
    reaches it is lost; resending until `streams` lists the frame gets it there."""
    port = free_port()
    pub = ctx(zmq.PUB, f"tcp://127.0.0.1:{port}")  # nobody listens yet
    for seq in range(5):
        pub.send(frame("early", seq))
    with make_broker(ingest=f"tcp://127.0.0.1:{port}").run_in_thread() as broker:
        time.sleep(0.5)  # the broker is up and subscribed: nothing sent before arrives late
        assert newest_seq(broker, "early") is None
        sends = 0
        while newest_seq(broker, "early") != 5:  # the check: resend until it is listed
            pub.send(frame("early", 5))
            sends += 1
            assert sends < 500
            time.sleep(0.05)
        assert broker.stats().frames_in >= 1 and broker.stats().malformed == 0


def test_known_stream_frames_with_bad_stream_session_or_seq_get_the_full_check(broker, ctx):
    """The per-message fast path hands anything unusual to the full decode."""
    sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=b"")
    pub = ctx(zmq.PUB, broker.ingest_endpoint)
    wait_until(lambda: broker.stats().subscriptions >= 1, what="subscription")
    publish_until_seen(broker, pub, "cam1")
    recv_frames(sub, 100)
    good = header("cam1", 2000).to_map()
    bad = {
        "header": {**good, "seq": "2001"},  # same session, seq not an integer
        "topic_mismatch": {**good, "stream": "cam2"},  # same session, another stream
    }
    for data in bad.values():
        pub.send(raw_message(b"cam1", 1, data))
    restarted = frame("cam1", 0, session=8)  # a restarted producer: accepted, counted
    pub.send(restarted)
    wait_until(lambda: [i.session for i in broker.streams()] == [8], what="the restarted session")
    assert broker.stats().malformed_by_kind == dict.fromkeys(bad, 1)
    assert [d for d in recv_frames(sub) if d != restarted] == []
    (info,) = broker.streams()
    assert (info.session, info.sessions, info.seq) == (8, 2, 0)


def test_oversize_message_disconnects_the_sender_not_the_broker(ctx):
    with make_broker(max_message_size=4096).run_in_thread() as broker:
        sub = ctx(zmq.SUB, broker.publish_endpoint, subscribe=b"")
        pub = ctx(zmq.PUB, broker.ingest_endpoint)
        pub.setsockopt(zmq.RECONNECT_IVL, 50)
        wait_until(lambda: broker.stats().subscriptions >= 1, what="subscription")
        publish_until_seen(broker, pub, "cam1")
        pub.send(frame("cam1", 5000, bytes(10_000)))
        wait_until(lambda: broker.stats().disconnects >= 1, what="oversize disconnect")

        def after_reconnect() -> bool:  # the producer reconnects and frames flow again
            pub.send(frame("cam1", 6000))
            return any(protocol.decode_frame(d).header.seq == 6000 for d in recv_frames(sub, 20))

        wait_until(after_reconnect, what="frames after the reconnect")
        assert newest_seq(broker, "cam1") == 6000
        assert all(s.bytes < 4096 * s.frames for s in broker.streams())


# --- control ----------------------------------------------------------------------------


def test_control_ops_and_bad_requests(broker, ctx):
    ping = control.request(broker.control_endpoint, "ping")
    assert ping["ok"] is True and ping["version"] and ping["server"] == "broker"
    assert ping["protocol"] == list(PROTOCOL_VERSION) and ping["protocol"] >= [1, 3]
    assert ping["capabilities"] == ["broker_set", "feeds", "shared_memory", "work_groups"]
    stats = control.request(broker.control_endpoint, "stats")
    for key in ("uptime_s", "frames_in", "frames_out", "bytes_in", "malformed", "disconnects"):
        assert key in stats
    for key in ("cache_sends", "subscriptions", "control_requests", "streams_live"):
        assert key in stats

    req = ctx(zmq.REQ, broker.control_endpoint)
    for bad in (
        b"\xc1 not msgpack",
        msgpack.packb([1, 2]),
        msgpack.packb({"v": [1, 0], "op": "reboot"}),
        msgpack.packb({"v": [9, 0], "op": "ping"}),
        msgpack.packb({"op": "ping"}),
    ):
        req.send(bad)
        assert req.poll(5000)
        reply = control_protocol.decode_reply(req.recv())
        assert reply["ok"] is False and reply["error"]

    dealer = ctx(zmq.DEALER, broker.control_endpoint)
    dealer.send(control_protocol.encode_request("ping"))
    assert dealer.poll(5000)
    assert control_protocol.decode_reply(dealer.recv())["ok"] is True
    dealer.send_multipart([b"", b"x", b"garbage"])
    assert dealer.poll(5000)
    parts = dealer.recv_multipart()
    assert parts[:-1] == [b"", b"x"] and control_protocol.decode_reply(parts[-1])["ok"] is False
    assert broker.stats().control_errors == 6
    assert control.request(broker.control_endpoint, "ping")["ok"] is True


# --- lifecycle and config -----------------------------------------------------------------


def test_lifecycle_close_without_run_and_twice():
    broker = make_broker()
    broker.start()
    assert broker.ingest_endpoint.startswith("tcp://127.0.0.1:")
    assert len({broker.ingest_endpoint, broker.publish_endpoint, broker.control_endpoint}) == 3
    broker.close()
    broker.close()
    broker.run()  # closed before it ran: returns at once


def test_bind_failure_is_a_transport_error_and_leaks_nothing():
    with make_broker().run_in_thread() as first:
        second = make_broker(publish=first.publish_endpoint)
        with pytest.raises(TransportError, match="cannot bind"):
            second.start()
        second.close()
        assert control.request(first.control_endpoint, "ping")["ok"] is True


def test_close_from_another_thread_stops_run():
    broker = make_broker()
    thread = broker.run_in_thread().thread
    broker.close()
    assert not thread.is_alive()


@pytest.mark.parametrize(
    "fields",
    [
        {"stale_after": 0},
        {"forget_after": -1},
        {"forget_after": 1, "stale_after": 3},
        {"log_stats": -1},
        {"max_message_size": 10},
        {"ingest": "tcp://*:5555", "publish": "tcp://*:5555"},
        {"control": "localhost:5558"},
    ],
)
def test_config_rejects_bad_values(fields):
    with pytest.raises(ConfigError):
        BrokerConfig(**fields)


# --- the registry alone (pure) -------------------------------------------------------------


def test_registry_rate_restarts_matching_stale_and_forget():
    reg = StreamRegistry(stale_after=1.0, forget_after=10.0)
    t0 = 1_000 * NS
    for i in range(31):  # 30 fps for one second
        reg.observe(header("cam1", i), 100, t0 + i * NS // 30, f"frame{i}")
    reg.observe(header("cam10", 0, session=8), 50, t0, "other")
    reg.observe(header("cam10", 0, session=9), 50, t0 + NS, "other2")  # producer restart
    now = t0 + NS
    info = {i.stream: i for i in reg.snapshot(now)}
    assert info["cam1"].fps == pytest.approx(30.0, rel=0.01)
    assert (info["cam1"].frames, info["cam1"].bytes, info["cam1"].seq) == (31, 3100, 30)
    assert (info["cam10"].sessions, info["cam10"].session) == (2, 9)
    assert [e.cached for e in reg.matching(topic_for("cam1"), now)] == ["frame30"]
    assert sorted(e.stream for e in reg.matching(b"cam", now)) == ["cam1", "cam10"]

    entry = reg.lookup(b"cam1")
    assert entry is not None and entry.seq == 30
    peeked = header("cam1", 31).to_map()
    assert not reg.needs_check(entry, peeked, 72, now)  # same stream and session: fast path
    assert reg.needs_check(None, peeked, 72, now)  # a new stream
    assert reg.needs_check(entry, {**peeked, "session": 9}, 72, now)
    assert reg.needs_check(entry, {**peeked, "stream": "cam10"}, 72, now)
    assert reg.needs_check(entry, {**peeked, "seq": None}, 72, now)
    assert reg.needs_check(entry, peeked, 71, now)  # a payload that does not fit (4x6x3)
    assert reg.needs_check(entry, peeked, 72, entry.check_at)  # the periodic full check
    reg.touch(entry, 31, 100, now, "frame31")
    assert [e.cached for e in reg.matching(topic_for("cam1"), now)] == ["frame31"]
    assert {i.stream: i.seq for i in reg.snapshot(now)}["cam1"] == 31

    reg.expire(now + 2 * NS)
    assert reg.counts(now + 2 * NS) == (0, 2)
    assert list(reg.matching(b"", now + 2 * NS)) == []
    assert all(i.state == "stale" and i.fps == 0.0 for i in reg.snapshot(now + 2 * NS))
    reg.expire(now + 11 * NS)
    assert len(reg) == 0 and reg.forgotten == 2
    assert reg.lookup(b"cam1") is None
