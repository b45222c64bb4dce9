"""The sink and `framebroker results`: real sockets on loopback, real SQLite files."""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import msgpack
import pytest
import zmq

from framebroker import control, control_protocol
from framebroker.capabilities import PROTOCOL_VERSION
from framebroker.cli import main
from framebroker.errors import ConfigError, StoreError
from framebroker.protocol import ResultMessage, encode_result
from framebroker.sink.jsonl import JsonLinesStore
from framebroker.sink.record import ResultRecord, json_safe
from framebroker.sink.service import Sink, SinkConfig
from framebroker.sink.store import SQLiteStore
from framebroker.testing import wait_until
from tests.conftest import free_port, query_db

T0 = 1_700_000_000_000_000_000


def result(seq=0, stream="cam1", consumer="stats", **result_map) -> ResultMessage:
    return ResultMessage(
        consumer=consumer,
        stream=stream,
        session=77,
        seq=seq,
        t_capture=T0 + seq * 1_000_000,
        t_start=T0 + seq * 1_000_000 + 12_000_000,  # 12 ms old when work began
        duration_ns=3_500_000,
        result=result_map or {"mean": 1.5, "seq": seq},
    )


def record(seq=0, stream="cam1", consumer="stats") -> ResultRecord:
    return ResultRecord.from_message(result(seq, stream, consumer), time.time_ns())


def stored(db: Path) -> list[ResultRecord]:
    """What a sink stored, read back through the sink's own reader (none before it starts)."""
    try:
        store = SQLiteStore.open_existing(db)
    except StoreError:
        return []
    try:
        return store.query()
    finally:
        store.close()


def count(db: Path) -> int:
    return len(stored(db))


@pytest.fixture
def ctx():
    context = zmq.Context()
    yield context
    context.destroy(linger=0)


class RunningSink:
    def __init__(self, config: SinkConfig, store=None):
        self.sink = Sink(config, store)
        self.sink.start()
        self.thread = threading.Thread(target=self.sink.run, daemon=True)
        self.thread.start()

    def close(self):
        self.sink.close()
        self.thread.join(timeout=5)
        assert not self.thread.is_alive()


@pytest.fixture
def start_sink(tmp_path):
    started: list[RunningSink] = []

    def start(store=None, **overrides) -> RunningSink:
        fields = {"results": "tcp://127.0.0.1:0", "db": str(tmp_path / "results.sqlite")}
        fields.update(overrides)
        running = RunningSink(SinkConfig(**fields), store)
        started.append(running)
        return running

    yield start
    for running in started:
        running.close()


@pytest.fixture
def push(ctx):
    sockets = []

    def connect(endpoint: str) -> zmq.Socket:
        sock = ctx.socket(zmq.PUSH)
        sock.setsockopt(zmq.LINGER, 2000)
        sock.connect(endpoint)
        sockets.append(sock)
        return sock

    yield connect
    for sock in sockets:
        sock.close(linger=0)


# --- the sink service ------------------------------------------------------------------------


def test_results_land_in_sqlite_with_all_fields(start_sink, push, tmp_path):
    before = time.time_ns()
    running = start_sink()
    sock = push(running.sink.results_endpoint)
    sock.send(encode_result(result(1, "site1/cam1", "stats", mean=1.5, boxes=[[1, 2, 3, 4]])))
    sock.send(encode_result(result(2, "site1/cam2", "motion", score=0.25)))
    wait_until(lambda: running.sink.stats().stored == 2, what="2 stored results")

    db = tmp_path / "results.sqlite"
    records = stored(db)
    assert [(r.consumer, r.stream, r.seq) for r in records] == [
        ("stats", "site1/cam1", 1),
        ("motion", "site1/cam2", 2),
    ]
    first = records[0]
    assert first.session == 77
    assert first.t_capture == T0 + 1_000_000
    assert first.t_start == T0 + 13_000_000
    assert first.duration_ns == 3_500_000
    assert before <= first.received_ns <= time.time_ns()
    assert first.result == {"mean": 1.5, "boxes": [[1, 2, 3, 4]]}
    # The columns other tools read (docs/protocol.md): the age and the result as JSON text.
    (age_ns, text) = query_db(db, "SELECT age_ns, result FROM results ORDER BY id")[0]
    assert age_ns == 12_000_000 and json.loads(text) == first.result
    stats = running.sink.stats()
    assert (stats.received, stats.stored, stats.malformed, stats.pending) == (2, 2, 0, 0)


def test_database_is_wal_with_stream_index(start_sink, tmp_path):
    start_sink()
    db = tmp_path / "results.sqlite"
    assert query_db(db, "PRAGMA journal_mode") == [("wal",)]
    assert "results_stream" in {r[1] for r in query_db(db, "PRAGMA index_list(results)")}


def test_jsonl_written_when_asked(start_sink, push, tmp_path):
    jsonl = tmp_path / "results.jsonl"
    running = start_sink(jsonl=str(jsonl))
    sock = push(running.sink.results_endpoint)
    for seq in range(3):
        sock.send(encode_result(result(seq, "cam1", "qr", text=f"code {seq}")))
    wait_until(lambda: running.sink.stats().stored == 3, what="3 stored results")

    lines = [json.loads(line) for line in jsonl.read_text().splitlines()]
    assert [line["seq"] for line in lines] == [0, 1, 2]
    assert lines[2]["result"] == {"text": "code 2"}
    assert lines[2]["age_ns"] == 12_000_000
    assert {"received_ns", "consumer", "stream", "session", "t_capture", "t_start"} <= set(lines[0])
    assert count(tmp_path / "results.sqlite") == 3


class CountingStore(SQLiteStore):
    """A real SQLite store that remembers the size of every batch it was given."""

    def __init__(self, path):
        super().__init__(path)
        self.batches: list[int] = []

    def add_many(self, records):
        new = super().add_many(records)
        self.batches.append(len(records))
        return new


def test_burst_of_2000_results_all_stored_in_batches(start_sink, push, tmp_path):
    db = tmp_path / "results.sqlite"
    store = CountingStore(db)
    # A long flush interval: only full batches are written until close().
    running = start_sink(store=store, batch_size=100, flush_interval=30.0)
    sock = push(running.sink.results_endpoint)
    for seq in range(2000):
        sock.send(encode_result(result(seq, f"cam{seq % 4}")))
    wait_until(lambda: running.sink.stats().stored == 2000, what="2000 stored results")

    assert store.batches == [100] * 20  # one transaction per 100 results, not per result
    assert count(db) == 2000
    assert len({r.seq for r in stored(db)}) == 2000


class FailingOnceStore(SQLiteStore):
    """A real SQLite store whose first write fails, as a full disk or a lock would."""

    failed = False

    def add_many(self, records):
        if not self.failed:
            self.failed = True
            raise StoreError("disk I/O error (test)")
        return super().add_many(records)


def test_failed_write_is_retried(start_sink, push, tmp_path):
    db = tmp_path / "results.sqlite"
    running = start_sink(store=FailingOnceStore(db))
    sock = push(running.sink.results_endpoint)
    for seq in range(3):
        sock.send(encode_result(result(seq)))
    wait_until(lambda: running.sink.stats().stored == 3, what="3 results stored on retry")
    stats = running.sink.stats()
    assert (stats.store_errors, stats.dropped) == (1, 0)
    assert [r.seq for r in stored(db)] == [0, 1, 2]


def test_close_stores_results_still_waiting_for_their_batch(start_sink, push, tmp_path):
    running = start_sink(batch_size=1000, flush_interval=30.0)
    sock = push(running.sink.results_endpoint)
    for seq in range(7):
        sock.send(encode_result(result(seq)))
    wait_until(lambda: running.sink.stats().pending == 7, what="7 pending results")
    assert count(tmp_path / "results.sqlite") == 0
    running.close()
    assert count(tmp_path / "results.sqlite") == 7
    assert running.sink.stats().stored == 7


def test_malformed_messages_counted_and_dropped(start_sink, push, tmp_path):
    running = start_sink()
    sock = push(running.sink.results_endpoint)
    good = result(5).to_map()
    bad = [
        b"\xc1 not msgpack",
        msgpack.packb([1, 2, 3]),
        msgpack.packb({k: v for k, v in good.items() if k != "stream"}),
        msgpack.packb({**good, "v": [9, 0]}),
        msgpack.packb({**good, "seq": 2**64 - 1}),  # does not fit SQLite's INTEGER
        msgpack.packb({**good, "result": "not a map"}),
    ]
    for data in bad:
        sock.send(data)
    sock.send(encode_result(result(6)))
    wait_until(lambda: running.sink.stats().stored == 1, what="the good result stored")

    stats = running.sink.stats()
    assert (stats.received, stats.malformed, stats.stored) == (7, 6, 1)
    assert running.thread.is_alive()
    sock.send(encode_result(result(7)))
    wait_until(lambda: running.sink.stats().stored == 2, what="storing after bad input")
    assert [r.seq for r in stored(tmp_path / "results.sqlite")] == [6, 7]


def test_control_port_answers_ping_and_stats_like_the_broker(start_sink, push, ctx):
    """The sink's control port (v1.3): ping with its capabilities, stats with the
    counters of malformed results by reason and duplicates; other ops get an error reply."""
    running = start_sink()
    endpoint = running.sink.control_endpoint
    assert endpoint is not None and endpoint != running.sink.results_endpoint
    ping = control.request(endpoint, "ping", server="sink")
    assert ping["ok"] is True and ping["server"] == "sink" and ping["version"]
    assert ping["protocol"] == list(PROTOCOL_VERSION)
    assert ping["capabilities"] == ["acked_results", "sink_control"]

    sock = push(running.sink.results_endpoint)
    sock.send(b"\xc1 not msgpack")
    sock.send_multipart([encode_result(result(1)), b"second part"])
    for _ in range(2):
        sock.send(encode_result(result(2)))
    wait_until(lambda: running.sink.stats().stored == 1, what="the result stored")
    wait_until(lambda: running.sink.stats().duplicates == 1, what="its copy counted")
    stats = control.request(endpoint, "stats", server="sink")
    assert stats["ok"] is True
    assert stats["malformed_by_reason"] == {"invalid": 1, "multipart": 1}
    assert (stats["received"], stats["stored"], stats["duplicates"]) == (4, 1, 1)
    assert stats["pending"] == 0 and stats["uptime_s"] > 0

    for op in ("streams", "groups"):
        reply = control.request(endpoint, op, server="sink")
        assert reply["ok"] is False and "not served by this sink" in reply["error"]
    req = ctx.socket(zmq.REQ)
    req.connect(endpoint)
    req.send(b"\xc1")
    assert req.poll(5000)
    assert control_protocol.decode_reply(req.recv())["ok"] is False
    req.close(linger=0)
    stats = control.request(endpoint, "stats", server="sink")
    assert (stats["control_requests"], stats["control_errors"]) == (6, 3)
    assert stats["rejected_by_reason"] == {"control_invalid": 3}


def test_control_port_is_optional_and_capabilities_follow_the_config(start_sink, tmp_path):
    assert start_sink(control=None).sink.control_endpoint is None
    running = start_sink(
        acked_results=None, control="tcp://127.0.0.1:0", db=str(tmp_path / "other.sqlite")
    )
    ping = control.request(running.sink.control_endpoint, "ping", server="sink")
    assert ping["capabilities"] == ["sink_control"]
    assert SinkConfig(results="tcp://*:5557").control == "tcp://*:5561"
    assert SinkConfig(results="ipc:///tmp/r").control == "ipc:///tmp/r.control"


def test_results_stats_reads_the_running_sink(start_sink, push, capsys):
    running = start_sink()
    push(running.sink.results_endpoint).send(b"\xc1")
    wait_until(lambda: running.sink.stats().malformed == 1, what="the bad message counted")
    endpoint = running.sink.control_endpoint
    assert main(["results", "--stats", "--sink-control", endpoint, "--json"]) == 0
    stats = json.loads(capsys.readouterr().out)
    assert stats["malformed_by_reason"] == {"invalid": 1} and stats["stored"] == 0
    assert main(["results", "--stats", "--sink-control", endpoint]) == 0
    table = capsys.readouterr().out
    assert table.startswith("sink totals") and "malformed_by_reason  invalid=1" in table
    nobody = f"tcp://127.0.0.1:{free_port()}"
    args = ["results", "--stats", "--sink-control", nobody, "--timeout", "0.3"]
    assert main(args) == 1
    assert "no reply from sink control port" in capsys.readouterr().err


def test_oversize_message_is_not_stored(start_sink, push, tmp_path):
    running = start_sink(max_message_size=4096)
    big = push(running.sink.results_endpoint)
    big.send(encode_result(result(1, blob="x" * 10_000)))
    small = push(running.sink.results_endpoint)
    small.send(encode_result(result(2)))
    wait_until(lambda: running.sink.stats().stored == 1, what="the small result stored")
    assert [r.seq for r in stored(tmp_path / "results.sqlite")] == [2]


def test_result_values_made_json_safe():
    value = {"b": b"\x00\x01", "nan": float("nan"), "t": (1, 2), b"k": {"x": None}}
    assert json_safe(value) == {"b": "AAE=", "nan": None, "t": [1, 2], "k": {"x": None}}


def test_sink_config_is_validated(tmp_path):
    with pytest.raises(ConfigError):
        SinkConfig(results="localhost:5557")
    with pytest.raises(ConfigError):
        SinkConfig(db="")
    with pytest.raises(ConfigError):
        SinkConfig(batch_size=0)
    with pytest.raises(ConfigError):
        SinkConfig(flush_interval=0)


def test_sink_reports_a_busy_port(start_sink, tmp_path):
    first = start_sink()
    second = Sink(SinkConfig(results=first.sink.results_endpoint, db=str(tmp_path / "b.db")))
    with pytest.raises(Exception, match="cannot bind"):
        second.start()
    second.close()


# --- stores ----------------------------------------------------------------------------------


def test_sqlite_store_queries(tmp_path):
    store = SQLiteStore(tmp_path / "r.sqlite")
    try:
        store.add_many([record(i, s) for i, s in enumerate(["a/1", "a/2", "b", "a/1", "b"])])
        assert [r.seq for r in store.query()] == [0, 1, 2, 3, 4]
        assert [r.seq for r in store.query(stream="a/1")] == [0, 3]
        assert [r.seq for r in store.query(stream="a/")] == [0, 1, 3]
        assert [r.seq for r in store.query(stream="a*")] == [0, 1, 3]
        assert [r.seq for r in store.query(limit=2, newest=True)] == [3, 4]
        assert [r.seq for r in store.query(after_id=3)] == [3, 4]
        assert store.last_id() == 5
        assert store.counts() == {"a/1": 2, "a/2": 1, "b": 2}
        ages = store.ages()
        assert ages["b"].count == 2 and ages["b"].median_ns == 12_000_000
    finally:
        store.close()


def test_jsonl_store_reads_back(tmp_path):
    store = JsonLinesStore(tmp_path / "r.jsonl")
    try:
        store.add_many([record(i, s) for i, s in enumerate(["a", "b", "a"])])
        assert [(r.id, r.seq) for r in store.query(stream="a")] == [(1, 0), (3, 2)]
    finally:
        store.close()


def test_open_existing_never_creates(tmp_path):
    with pytest.raises(StoreError, match="no results database"):
        SQLiteStore.open_existing(tmp_path / "missing.sqlite")
    assert not (tmp_path / "missing.sqlite").exists()
    (tmp_path / "other.sqlite").touch()
    with pytest.raises(StoreError, match="not a framebroker results database"):
        SQLiteStore.open_existing(tmp_path / "other.sqlite")


# --- framebroker results ---------------------------------------------------------------------


@pytest.fixture
def filled_db(tmp_path) -> Path:
    db = tmp_path / "filled.sqlite"
    store = SQLiteStore(db)
    store.add_many(
        [
            record(1, "site1/cam1", "stats"),
            record(2, "site1/cam2", "motion"),
            record(3, "cam10", "stats"),
            record(4, "site1/cam1", "qr"),
        ]
    )
    store.close()
    return db


def test_results_prints_a_table(filled_db, capsys):
    assert main(["results", "--db", str(filled_db)]) == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[0].split()[:4] == ["time", "consumer", "stream", "seq"]
    assert len(lines) == 5
    assert lines[1].split()[1:6] == ["stats", "site1/cam1", "1", "12.0", "3.5"]
    assert '{"mean":1.5,"seq":1}' in lines[1]


def test_results_filters_by_stream(filled_db, capsys):
    assert main(["results", "--db", str(filled_db), "--stream", "site1/cam1"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[3] for line in lines] == ["1", "4"]
    assert main(["results", "--db", str(filled_db), "--stream", "site1/"]) == 0
    lines = capsys.readouterr().out.splitlines()[1:]
    assert [line.split()[3] for line in lines] == ["1", "2", "4"]


def test_results_json_lines_and_limit(filled_db, capsys):
    assert main(["results", "--db", str(filled_db), "--json", "--limit", "2"]) == 0
    lines = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [(r["id"], r["stream"], r["seq"]) for r in lines] == [
        (3, "cam10", 3),
        (4, "site1/cam1", 4),
    ]
    assert lines[0]["age_ns"] == 12_000_000
    assert lines[0]["result"] == {"mean": 1.5, "seq": 3}


def test_results_missing_database_exits_1(tmp_path, capsys):
    missing = tmp_path / "nowhere.sqlite"
    assert main(["results", "--db", str(missing)]) == 1
    err = capsys.readouterr().err
    assert f"no results database at {missing}" in err
    assert not missing.exists()


def framebroker(*args: str, **kwargs) -> subprocess.Popen:
    return subprocess.Popen(
        [sys.executable, "-m", "framebroker", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        **kwargs,
    )


def line_reader(stream) -> queue.Queue:
    lines: queue.Queue = queue.Queue()

    def read():
        for line in stream:
            lines.put(line.rstrip("\n"))

    threading.Thread(target=read, daemon=True).start()
    return lines


def wait_for_line(lines: queue.Queue, pattern: str, timeout=20.0) -> re.Match:
    deadline = time.monotonic() + timeout
    seen = []
    while time.monotonic() < deadline:
        try:
            line = lines.get(timeout=0.1)
        except queue.Empty:
            continue
        seen.append(line)
        match = re.search(pattern, line)
        if match:
            return match
    raise AssertionError(f"no line matching {pattern!r}; saw: {seen}")


@pytest.fixture
def processes():
    started: list[subprocess.Popen] = []
    yield started
    for proc in started:
        if proc.poll() is None:
            os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        for pipe in (proc.stdout, proc.stderr):
            if pipe:
                pipe.close()


def test_results_follow_prints_new_rows(filled_db, processes):
    proc = framebroker("results", "--db", str(filled_db), "--follow", "--interval", "0.1")
    processes.append(proc)
    out = line_reader(proc.stdout)
    wait_for_line(out, r"qr\s+site1/cam1\s+4\b")  # the newest row already stored

    store = SQLiteStore(filled_db)
    store.add_many([record(10, "late/cam", "faces"), record(11, "late/cam", "faces")])
    store.close()
    wait_for_line(out, r"faces\s+late/cam\s+10\b")
    wait_for_line(out, r"faces\s+late/cam\s+11\b")

    os.kill(proc.pid, signal.SIGINT)  # Ctrl-C ends --follow successfully
    assert proc.wait(timeout=10) == 0


def test_sink_process_sigterm_exits_0_and_keeps_results(tmp_path, push, processes):
    db = tmp_path / "proc.sqlite"
    proc = framebroker(
        "sink",
        "--results",
        "tcp://127.0.0.1:0",
        "--db",
        str(db),
        "--batch-size",
        "10",
        "--flush-interval",
        "60",
    )
    processes.append(proc)
    endpoint = wait_for_line(line_reader(proc.stderr), r"results on (tcp://\S+),")[1]
    sock = push(endpoint)
    for seq in range(25):
        sock.send(encode_result(result(seq)))
    wait_until(lambda: count(db) >= 20, what="two full batches stored")

    os.kill(proc.pid, signal.SIGTERM)
    assert proc.wait(timeout=10) == 0
    assert count(db) == 25  # the last 5 waited for their batch and were flushed on exit
    assert not Path(f"{db}-wal").exists()  # closed cleanly: the WAL was checkpointed
    assert query_db(db, "PRAGMA integrity_check") == [("ok",)]


def test_a_failed_background_batch_goes_back_before_what_arrived_since():
    from framebroker.sink.pending import PendingResults

    pending = PendingResults()
    pending.add(record(1), (b"p", 1))
    pending.add(record(2), (b"p", 2))
    batch = pending.take()  # in flight
    assert len(pending) == 0
    pending.add(record(3), (b"p", 3))
    pending.add(record(2), (b"q", 9))  # resent meanwhile through another sink connection
    pending.restore(batch)  # the write failed
    again = pending.take()
    assert [r.seq for r in again.records] == [1, 2, 3]
    assert again.acks_by_peer() == {b"p": [1, 2, 3], b"q": [9]}


def test_the_writers_outcome_with_no_timeout_waits_for_the_batch(tmp_path):
    """The sink's last collection (``outcome(timeout=None)``) waits for the batch in flight,
    so its results are acknowledged before the sink exits."""
    from framebroker.sink.pending import PendingResults
    from framebroker.sink.writer import BatchWriter

    class SlowStore(SQLiteStore):  # a real SQLite store whose writes take a while
        def add_many(self, records):
            time.sleep(0.3)
            return super().add_many(records)

    pending = PendingResults()
    pending.add(record(1), (b"p", 1))
    store, ctx = SlowStore(tmp_path / "r.sqlite"), zmq.Context()
    writer = BatchWriter(store, ctx)
    try:
        writer.submit(pending.take())
        assert writer.outcome() is None  # still writing
        done = writer.outcome(timeout=None)
        assert done is not None and [r.seq for r in done.new] == [1]
        assert not writer.busy
    finally:
        writer.close()
        store.close()
        ctx.term()
