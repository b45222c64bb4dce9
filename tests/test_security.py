"""CURVE security with real sockets on loopback: key files, the all-or-nothing configuration,
and a broker and a sink that admit only allow-listed clients, counting and logging the
rest. The CLI and the whole pipeline as processes: tests/test_security_cli.py."""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import stat
import threading
import time
from pathlib import Path

import pytest
import zmq

from framebroker import control
from framebroker.broker import Broker, BrokerConfig
from framebroker.broker.metrics import BrokerCollector
from framebroker.consumers import Consumer, ConsumerConfig
from framebroker.errors import ConfigError, TransportError
from framebroker.keys import generate_key_pair, load_allow_list, load_key_pair, load_public_key
from framebroker.producers import Producer, ProducerConfig
from framebroker.protocol import FrameHeader, ResultMessage, encode_frame, encode_result
from framebroker.security import (
    ClientSecurity,
    ServerGuard,
    ServerSecurity,
    is_loopback,
    rejection_reason,
)
from framebroker.sink.metrics import SinkCollector
from framebroker.sink.service import Sink, SinkConfig
from framebroker.viewer.hub import FrameHub
from framebroker.work_protocol import WorkRequest, encode_work_request
from tests.conftest import wait_until

LOOPBACK = "tcp://127.0.0.1:0"


class Keys:
    """A key set: servers broker and sink, clients in an allow-list, an outsider."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.allow = root / "allowed"
        self.allow.mkdir()
        for name in ("broker", "sink", "stranger", "later"):
            generate_key_pair(root / name)
        for name in ("cam", "worker"):
            generate_key_pair(root / "clients" / name)
            shutil.copy(root / "clients" / f"{name}.key", self.allow)

    def secret(self, name: str) -> str:
        path = self.root / "clients" / f"{name}.key_secret"
        return str(path if path.exists() else self.root / f"{name}.key_secret")

    def server(self, name: str) -> ServerSecurity:
        return ServerSecurity(key=self.secret(name), allow=str(self.allow))

    def client(self, name: str) -> ClientSecurity:
        return ClientSecurity(
            key=self.secret(name),
            broker_key=str(self.root / "broker.key"),
            sink_key=str(self.root / "sink.key"),
        )


@pytest.fixture(scope="module")
def keys(tmp_path_factory) -> Keys:
    return Keys(tmp_path_factory.mktemp("keys"))


def header(stream: str, seq: int) -> FrameHeader:
    now = time.time_ns()
    return FrameHeader(
        stream=stream,
        session=1,
        seq=seq,
        t_capture=now,
        t_publish=now,
        encoding="raw",
        shape=(2, 2, 3),
        dtype="uint8",
        pixfmt="bgr24",
    )


class Peers:
    """Client sockets (made as framebroker's clients make them), closed at teardown."""

    def __init__(self) -> None:
        self.ctx = zmq.Context()
        self.sockets: list[zmq.Socket] = []

    def socket(
        self, kind: int, endpoint: str, security: ClientSecurity, server: str = "broker"
    ) -> zmq.Socket:
        sock = self.ctx.socket(kind)
        sock.setsockopt(zmq.LINGER, 0)
        if kind == zmq.SUB:
            sock.setsockopt(zmq.SUBSCRIBE, b"")
        security.secure(sock, server)
        sock.connect(endpoint)
        self.sockets.append(sock)
        return sock

    def close(self) -> None:
        for sock in self.sockets:
            sock.close(linger=0)
        self.ctx.term()


@pytest.fixture
def peers():
    p = Peers()
    yield p
    p.close()


@pytest.fixture
def curve_broker(keys):
    config = BrokerConfig(
        ingest=LOOPBACK,
        publish=LOOPBACK,
        control=LOOPBACK,
        log_stats=0.0,
        stale_after=30.0,
        security=keys.server("broker"),
    )
    with Broker(config).run_in_thread() as b:
        yield b


PLAIN = ClientSecurity()


# --- key files ------------------------------------------------------------------------------


def test_generated_key_files_have_the_right_modes_and_load(tmp_path):
    old = os.umask(0o000)  # a permissive umask must not make the secret readable
    try:
        public, secret, written = generate_key_pair(tmp_path / "sub" / "broker")
    finally:
        os.umask(old)
    assert written and public.name == "broker.key" and secret.name == "broker.key_secret"
    assert stat.S_IMODE(public.stat().st_mode) == 0o644
    assert stat.S_IMODE(secret.stat().st_mode) == 0o600
    pair = load_key_pair(secret)
    assert load_public_key(public) == pair.public == zmq.curve_public(pair.secret)
    assert load_public_key(pair.public.decode()) == pair.public  # inline Z85
    assert "secret" not in repr(pair) or pair.secret.decode() not in repr(pair)
    assert [p.name for p in tmp_path.glob("sub/.*")] == []  # no temporary files left


def test_an_existing_key_pair_is_kept_replaced_or_refused(tmp_path):
    generate_key_pair(tmp_path / "a")
    before = load_public_key(tmp_path / "a.key")
    with pytest.raises(ConfigError, match="already exists"):
        generate_key_pair(tmp_path / "a")
    assert generate_key_pair(tmp_path / "a", keep=True)[2] is False
    assert load_public_key(tmp_path / "a.key") == before
    generate_key_pair(tmp_path / "a.key_secret", overwrite=True)
    assert load_public_key(tmp_path / "a.key") != before


def test_bad_key_files_get_clear_errors(tmp_path):
    generate_key_pair(tmp_path / "a")
    with pytest.raises(ConfigError, match="holds only a public key"):
        load_key_pair(tmp_path / "a.key")
    with pytest.raises(ConfigError, match="does not exist"):
        load_key_pair(tmp_path / "missing.key_secret")
    (tmp_path / "junk.key").write_text("hello\n")
    with pytest.raises(ConfigError, match="not a ZeroMQ certificate"):
        load_public_key(tmp_path / "junk.key")
    with pytest.raises(ConfigError, match="neither a key file nor a key"):
        load_public_key("short")
    with pytest.raises(ConfigError, match="not a Z85-encoded"):
        load_public_key("~" * 40)
    other = load_key_pair(generate_key_pair(tmp_path / "b")[1])
    mixed = (
        (tmp_path / "a.key_secret")
        .read_text()
        .replace(load_key_pair(tmp_path / "a.key_secret").secret.decode(), other.secret.decode())
    )
    (tmp_path / "mixed.key_secret").write_text(mixed)
    with pytest.raises(ConfigError, match="does not belong"):
        load_key_pair(tmp_path / "mixed.key_secret")
    with pytest.raises(ConfigError, match="not a directory"):
        load_allow_list(tmp_path / "a.key")


def test_a_world_readable_secret_key_is_loaded_with_a_warning(tmp_path, caplog):
    _, secret, _ = generate_key_pair(tmp_path / "a")
    secret.chmod(0o644)
    with caplog.at_level(logging.WARNING, logger="framebroker.keys"):
        load_key_pair(secret)
    assert "readable by other users" in caplog.text


# --- configuration: all or nothing ----------------------------------------------------------


def test_server_security_is_all_or_nothing(keys):
    assert not ServerSecurity().curve
    assert keys.server("broker").curve
    with pytest.raises(ConfigError, match="--curve-allow DIR is missing"):
        ServerSecurity(key=keys.secret("broker"))
    with pytest.raises(ConfigError, match="--curve-key FILE is missing"):
        ServerSecurity(allow=str(keys.allow))
    with pytest.raises(ConfigError, match="not a directory"):
        ServerSecurity(key=keys.secret("broker"), allow=str(keys.root / "nowhere"))


def test_client_security_is_all_or_nothing(keys):
    with pytest.raises(ConfigError, match="without --curve-key"):
        ClientSecurity(broker_key=str(keys.root / "broker.key"))
    producer_only = ClientSecurity(key=keys.secret("cam"), broker_key=str(keys.root / "broker.key"))
    ProducerConfig(source="test:64x48@5", stream="cam", security=producer_only)
    with pytest.raises(ConfigError, match="--curve-sink-key"):
        ConsumerConfig(security=producer_only)
    ConsumerConfig(results=None, security=producer_only)  # sends nothing to a sink
    with pytest.raises(ConfigError, match="--curve-broker-key"):
        ProducerConfig(
            source="test:64x48@5", stream="cam", security=ClientSecurity(key=keys.secret("cam"))
        )
    assert "plaintext" in PLAIN.describe("broker")
    assert "CURVE" in keys.client("cam").describe("broker", "sink")


def test_loopback_endpoints_are_recognised():
    for endpoint in ("tcp://127.0.0.1:5555", "tcp://[::1]:1", "tcp://localhost:2", "ipc:///x"):
        assert is_loopback(endpoint), endpoint
    for endpoint in ("tcp://*:5555", "tcp://0.0.0.0:1", "tcp://10.0.0.1:2", "tcp://eth0:3"):
        assert not is_loopback(endpoint), endpoint


def test_plaintext_on_a_network_bind_is_warned_about_and_curve_is_stated(keys, caplog):
    with caplog.at_level(logging.INFO, logger="framebroker.security"):
        ServerGuard(ServerSecurity(), "broker").announce({"ingest": "tcp://127.0.0.1:5555"})
        assert "plaintext" in caplog.text and "WITHOUT CURVE" not in caplog.text
        ServerGuard(ServerSecurity(), "broker").announce({"ingest": "tcp://*:5555"})
        assert "ingest tcp://*:5555 reachable from the network WITHOUT CURVE" in caplog.text
        caplog.clear()
        ctx = zmq.Context()
        guard = ServerGuard(keys.server("sink"), "sink")
        try:
            guard.start(ctx)
            guard.announce({"results": "tcp://*:5557"})
        finally:
            guard.close()
            ctx.term()
    assert "sink security: CURVE on results" in caplog.text
    assert "2 allowed client key(s)" in caplog.text and "WITHOUT" not in caplog.text


def test_rejection_reasons_name_what_went_wrong():
    assert rejection_reason(zmq.EVENT_HANDSHAKE_FAILED_AUTH, 400) == "unknown_key"
    mismatch = zmq.PROTOCOL_ERROR_ZMTP_MECHANISM_MISMATCH
    assert rejection_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, mismatch) == "mechanism"
    crypto = zmq.PROTOCOL_ERROR_ZMTP_CRYPTOGRAPHIC
    assert rejection_reason(zmq.EVENT_HANDSHAKE_FAILED_PROTOCOL, crypto) == "crypto"
    assert rejection_reason(zmq.EVENT_HANDSHAKE_FAILED_NO_DETAIL, 0) == "handshake"


# --- the broker ------------------------------------------------------------------------------


def stats(broker: Broker, security: ClientSecurity) -> dict:
    return control.request(broker.control_endpoint, "stats", security=security, timeout=2.0)


def test_curve_broker_serves_allowed_clients_and_refuses_the_rest(
    curve_broker, keys, peers, caplog
):
    """Subscribers without a key, with an unknown key or with a wrong server key get no
    frame; frames of an unknown producer are not forwarded; control requests of unknown
    clients get no answer; a worker with an unknown key cannot join a work group. Every
    refused handshake is counted and logged."""
    b = curve_broker
    stranger = ClientSecurity(key=keys.secret("stranger"), broker_key=str(keys.root / "broker.key"))
    wrong_server = ClientSecurity(key=keys.secret("cam"), broker_key=str(keys.root / "sink.key"))
    caplog.set_level(logging.WARNING, logger="framebroker.security")
    good_sub = peers.socket(zmq.SUB, b.publish_endpoint, keys.client("worker"))
    bad_subs = [
        peers.socket(zmq.SUB, b.publish_endpoint, sec) for sec in (PLAIN, stranger, wrong_server)
    ]
    good_pub = peers.socket(zmq.PUB, b.ingest_endpoint, keys.client("cam"))
    bad_pub = peers.socket(zmq.PUB, b.ingest_endpoint, stranger)
    plain_pub = peers.socket(zmq.PUB, b.ingest_endpoint, PLAIN)
    good_worker = peers.socket(zmq.DEALER, b.work_endpoint, keys.client("worker"))
    bad_worker = peers.socket(zmq.DEALER, b.work_endpoint, stranger)
    ready = WorkRequest(op="ready", group="g", streams=("*",), credit=1, received=0)
    for worker in (good_worker, bad_worker):
        worker.send(encode_work_request(ready), zmq.NOBLOCK)

    def good_frame_arrives():
        good_pub.send(encode_frame(header("good", 0), bytes(12)))
        bad_pub.send(encode_frame(header("intruder", 0), bytes(12)))
        plain_pub.send(encode_frame(header("plain", 0), bytes(12)))
        return good_sub.poll(100)

    wait_until(good_frame_arrives, timeout=10)
    for seq in range(1, 20):  # more of both, now that every handshake is settled
        good_pub.send(encode_frame(header("good", seq), bytes(12)))
        bad_pub.send(encode_frame(header("intruder", seq), bytes(12)))
        plain_pub.send(encode_frame(header("plain", seq), bytes(12)))
        time.sleep(0.01)
    time.sleep(0.3)
    seen = set()
    while good_sub.poll(50):
        seen.add(good_sub.recv()[:20])
    assert all(t.startswith(b"good") for t in seen) and seen
    assert not any(sub.poll(0) for sub in bad_subs), "a refused subscriber got a frame"
    assert [s.stream for s in b.streams()] == ["good"]
    assert good_worker.poll(2000) and good_worker.recv().startswith(b"good\x00")
    assert not bad_worker.poll(0), "a refused worker got a frame"
    assert [len(g.workers) for g in b.groups()] == [1]

    with pytest.raises(TransportError, match="does its allow-list have our CURVE key"):
        control.request(b.control_endpoint, "ping", timeout=0.5, security=stranger)
    with pytest.raises(TransportError, match="if it runs CURVE, give --curve-key"):
        control.request(b.control_endpoint, "ping", timeout=0.5)
    own = ClientSecurity(key=keys.secret("broker"), broker_key=str(keys.root / "broker.key"))
    assert control.request(b.control_endpoint, "ping", security=own)["ok"]  # its own key

    def rejections_counted():
        s = stats(b, keys.client("worker"))
        by_socket = s["auth_rejected_by_socket"]
        return (
            by_socket["publish"] >= 3
            and by_socket["ingest"] >= 2
            and by_socket["control"] >= 2
            and by_socket["work"] >= 1
        )

    wait_until(rejections_counted, timeout=10)
    s = stats(b, keys.client("worker"))
    assert s["auth_rejected"] == sum(s["auth_rejected_by_socket"].values())
    reasons = set(s["auth_rejected_by_reason"])
    assert {"unknown_key", "crypto"} <= reasons
    # a plaintext client: the server sees the mechanism mismatch, or the client hanging up
    # first on seeing the server's (libzmq reports "no detail" then)
    assert reasons & {"mechanism", "handshake"}
    assert s["control_requests"] >= 2  # ours only: the refused ones never arrived
    assert s["disconnects"] == 0, "a refused handshake is not a producer disconnect"
    for text in (
        "broker: rejected a client on ingest: its CURVE key is not in the allow-list",
        "rejected a client on publish: its CURVE handshake did not decrypt",
        "rejected a client on control",
        "is not in the allow-list",  # the ZAP handler names the key
    ):
        assert text in caplog.text, text
    assert load_public_key(keys.root / "stranger.key").decode() in caplog.text

    families = {m.name: m for m in BrokerCollector(b).collect()}
    dropped = {s.labels["reason"]: s.value for s in families["framebroker_broker_dropped"].samples}
    assert dropped["auth"] >= 7
    by_socket = {
        s.labels["socket"]: s.value for s in families["framebroker_broker_auth_rejected"].samples
    }
    assert set(by_socket) == {"ingest", "publish", "control", "work"}


def broker_with_empty_allow_list(keys, tmp_path: Path) -> tuple[BrokerConfig, Path]:
    """A CURVE broker config whose allow-list directory starts empty."""
    allow = tmp_path / "allow"
    allow.mkdir()
    config = BrokerConfig(
        ingest=LOOPBACK,
        publish=LOOPBACK,
        control=LOOPBACK,
        log_stats=0.0,
        security=ServerSecurity(key=keys.secret("broker"), allow=str(allow)),
    )
    return config, allow


def test_keys_added_to_the_allow_list_are_admitted_without_a_restart(keys, peers, tmp_path):
    config, allow = broker_with_empty_allow_list(keys, tmp_path)
    later = ClientSecurity(key=keys.secret("later"), broker_key=str(keys.root / "broker.key"))
    with Broker(config).run_in_thread() as b:
        with pytest.raises(TransportError):
            control.request(b.control_endpoint, "ping", timeout=0.5, security=later)
        shutil.copy(keys.root / "later.key", allow)
        os.utime(allow, ns=(time.time_ns(), time.time_ns() + 10**9))  # coarse mtime clocks
        assert control.request(b.control_endpoint, "ping", timeout=2.0, security=later)["ok"]


def test_a_plaintext_broker_refuses_curve_clients_and_says_why(keys, peers, caplog):
    """A CURVE client of a plaintext broker gets no answer. Who notices the mechanism
    mismatch first is a race: when the client hangs up first the broker sees only a broken
    handshake, which a plaintext broker does not count (port probes look the same), so
    the test tries a few times."""
    caplog.set_level(logging.WARNING, logger="framebroker.security")
    config = BrokerConfig(ingest=LOOPBACK, publish=LOOPBACK, control=LOOPBACK, log_stats=0.0)
    with Broker(config).run_in_thread() as b:
        for _ in range(10):
            with pytest.raises(TransportError):
                control.request(
                    b.control_endpoint, "ping", timeout=0.3, security=keys.client("cam")
                )
            if b.stats().auth_rejected:
                break
        assert control.request(b.control_endpoint, "ping")["ok"]
        wait_until(lambda: b.stats().auth_rejected >= 1, timeout=5)
    assert "it uses CURVE but this service runs plaintext" in caplog.text


# --- the sink --------------------------------------------------------------------------------


def result(consumer: str, seq: int, delivery: int | None = None) -> bytes:
    return encode_result(
        ResultMessage(
            consumer=consumer,
            stream="cam",
            session=1,
            seq=seq,
            t_capture=1,
            t_start=2,
            duration_ns=3,
            result={"n": seq},
            id=delivery,
        )
    )


def test_curve_sink_stores_only_results_of_allowed_clients(keys, peers, tmp_path):
    sink = Sink(
        SinkConfig(results=LOOPBACK, db=str(tmp_path / "r.sqlite"), security=keys.server("sink"))
    )
    sink.start()
    thread = threading.Thread(target=sink.run, daemon=True)
    thread.start()
    try:
        stranger = ClientSecurity(key=keys.secret("stranger"), sink_key=str(keys.root / "sink.key"))
        good = peers.socket(zmq.PUSH, sink.results_endpoint, keys.client("worker"), "sink")
        bad = peers.socket(zmq.PUSH, sink.results_endpoint, stranger, "sink")
        plain = peers.socket(zmq.PUSH, sink.results_endpoint, PLAIN, "sink")
        acked = sink.acked_results_endpoint
        assert acked is not None
        bad_dealer = peers.socket(zmq.DEALER, acked, stranger, "sink")
        for seq in range(5):
            for sock, who in ((bad, "stranger"), (plain, "plain"), (bad_dealer, "dealer")):
                sock.send(result(who, seq, delivery=seq), zmq.NOBLOCK)
        for seq in range(5):
            good.send(result("worker", seq))
        wait_until(lambda: sink.stats().stored >= 5, timeout=10)
        wait_until(lambda: sink.stats().auth_rejected >= 3, timeout=10)
        time.sleep(0.3)
        assert bad_dealer.poll(0) == 0, "a refused client got an acknowledgement"
    finally:
        sink.close()
        thread.join(10)
    stats = sink.stats()
    assert stats.stored == stats.received == 5 and stats.malformed == 0
    families = {m.name: m for m in SinkCollector(sink).collect()}
    assert families["framebroker_sink_auth_rejected"].samples[0].value >= 3


def test_a_refused_producer_gets_in_once_its_key_is_allowed(keys, tmp_path, caplog):
    """libzmq never retries a handshake the server refused; the producer does, so adding
    its key to the allow-list is enough."""
    config, allow = broker_with_empty_allow_list(keys, tmp_path)
    caplog.set_level(logging.INFO, logger="framebroker")
    with Broker(config).run_in_thread() as b:
        producer = Producer(
            ProducerConfig(
                source="test:64x48@10",
                stream="late",
                ingest=b.ingest_endpoint,
                security=keys.client("cam"),
            )
        )
        thread = threading.Thread(target=producer.run, daemon=True)
        thread.start()
        try:
            wait_until(lambda: "refused our handshake: our CURVE key is not in" in caplog.text)
            assert not b.streams()
            shutil.copy(keys.root / "clients" / "cam.key", allow)
            os.utime(allow, ns=(time.time_ns(), time.time_ns() + 10**9))
            wait_until(lambda: [s.stream for s in b.streams()] == ["late"], timeout=20)
        finally:
            producer.close()
            thread.join(10)


def test_refused_consumers_workers_and_viewers_get_in_once_their_key_is_allowed(
    keys, tmp_path, caplog
):
    """Like producers, every client retries a handshake the broker or the sink refused:
    a consumer (publish port, results to the sink), a worker of a group (work port) and
    the viewer's frame hub start with a key nobody allows, and get in without a restart
    once it is added to the allow-lists."""
    caplog.set_level(logging.INFO, logger="framebroker")
    config, allow = broker_with_empty_allow_list(keys, tmp_path)
    shutil.copy(keys.root / "clients" / "cam.key", allow)  # the producer is welcome
    sink = Sink(
        SinkConfig(
            results=LOOPBACK,
            db=str(tmp_path / "r.sqlite"),
            security=ServerSecurity(key=keys.secret("sink"), allow=str(allow)),
        )
    )
    with Broker(config).run_in_thread() as b, sink.run_in_thread():
        client = ClientSecurity(
            key=keys.secret("later"),
            broker_key=str(keys.root / "broker.key"),
            sink_key=str(keys.root / "sink.key"),
        )
        ends = {
            "publish": b.publish_endpoint,
            "work": b.work_endpoint,
            "acked_results": sink.acked_results_endpoint,
        }
        fan_out = ConsumerConfig(name="fan", streams=("late",), security=client, **ends)
        worker = ConsumerConfig(name="wrk", streams=("late",), group="g", security=client, **ends)
        producer = Producer(
            ProducerConfig(
                source="test:64x48@20",
                stream="late",
                ingest=b.ingest_endpoint,
                security=keys.client("cam"),
            )
        )
        hub = FrameHub(b.publish_endpoint, security=client)
        seen = {"fan": 0, "wrk": 0}

        def processor(name):
            def count(frame):
                seen[name] += 1
                return {"seq": frame.seq}

            return count

        async def viewer_gets_frames() -> int:
            await hub.start()
            try:
                while not ("later.key" in os.listdir(allow) and hub.received):
                    if "later.key" not in os.listdir(allow) and refused_everywhere():
                        shutil.copy(keys.root / "later.key", allow)
                        os.utime(allow, ns=(time.time_ns(), time.time_ns() + 10**9))
                    await asyncio.sleep(0.1)
                return hub.received
            finally:
                await hub.close()

        def refused_everywhere() -> bool:
            return _refused(b, sink) and seen == {"fan": 0, "wrk": 0} and not hub.received

        with (
            producer.run_in_thread(),
            Consumer(fan_out, processor("fan")).run_in_thread() as c1,
            Consumer(worker, processor("wrk")).run_in_thread() as c2,
        ):
            assert asyncio.run(asyncio.wait_for(viewer_gets_frames(), 60)) > 0
            wait_until(lambda: seen["fan"] > 0 and seen["wrk"] > 0, timeout=20)
            wait_until(lambda: sink.stats().stored >= 2, timeout=20)
        assert c1.stats.processed > 0 and c2.stats.processed > 0
    assert "the broker at" in caplog.text and "refused our handshake" in caplog.text
    assert "the sink at" in caplog.text


def _refused(broker: Broker, sink: Sink) -> bool:
    """The broker refused the subscriber, the worker and the viewer; the sink refused the
    consumers' result sockets."""
    by_socket = broker.stats().auth_rejected_by_socket
    return (
        by_socket.get("publish", 0) >= 2
        and by_socket.get("work", 0) >= 1
        and sink.stats().auth_rejected >= 2
    )


def test_client_security_survives_pickling_for_worker_processes(keys):
    import pickle

    config = ConsumerConfig(security=keys.client("worker"))
    copy = pickle.loads(pickle.dumps(config))
    assert copy.security.keypair == config.security.keypair
    assert copy.security.server_keys == config.security.server_keys
