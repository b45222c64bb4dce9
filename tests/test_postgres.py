"""PostgreSQL as the server store, against a real throwaway server (tests/postgres.py).

The store: one row per (consumer, stream, session, seq) even from two stores at once, the
same readers' questions as SQLite, and a reconnect after the server restarts. The system:
two ``framebroker sink`` processes on one database and a consumer given both as its sink
set; one sink is killed with SIGKILL and the database restarted (``pg_ctl stop -m
immediate``) mid-run, and every result the consumer made is stored exactly once.
"""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator

import pytest

from framebroker.errors import StoreError
from framebroker.sink.postgres import PostgreSQLStore, redact
from framebroker.sink.record import ResultRecord
from framebroker.sink.store import open_reader, open_writer
from tests.conftest import ROOT, free_port, wait_until
from tests.postgres import PostgresServer, postgres_server, query
from tests.test_faults_sink import printed_keys, results_port


@pytest.fixture(scope="module")
def server() -> Iterator[PostgresServer]:
    with postgres_server() as pg:
        yield pg


@pytest.fixture
def db(server: PostgresServer) -> str:
    """A fresh database on the module's server."""
    return server.create_database("t" + uuid.uuid4().hex[:12])


def record(seq: int, stream: str = "site/cam1", consumer: str = "c1") -> ResultRecord:
    return ResultRecord(
        received_ns=1_000 + seq,
        consumer=consumer,
        stream=stream,
        session=7,
        seq=seq,
        t_capture=100 * seq,
        t_start=100 * seq + 40,
        duration_ns=5,
        result={"seq": seq, "label": "x"},
    )


def test_two_stores_store_each_result_once(db):
    first, second = PostgreSQLStore(db), PostgreSQLStore(db)
    try:
        batch = [record(i) for i in range(50)]
        assert first.add_many([*batch, batch[0]]) == batch  # a repeat in one batch: once
        assert second.add_many([*batch[:10], record(50)]) == [record(50)]
        assert query(db, "SELECT count(*) FROM results") == [(51,)]
    finally:
        first.close()
        second.close()


def test_readers_ask_postgresql_what_they_ask_sqlite(db, tmp_path):
    writer = open_writer(db)
    sqlite = open_writer(tmp_path / "r.sqlite")
    try:
        batch = [record(i, stream=f"site/cam{i % 2}") for i in range(10)] + [record(0, "other")]
        writer.add_many(batch)
        sqlite.add_many(batch)
        pg_reader, sqlite_reader = open_reader(db), open_reader(tmp_path / "r.sqlite")
        for ask in (
            lambda r: r.query(),
            lambda r: r.query(stream="site/", limit=3, newest=True),
            lambda r: r.query(stream="site/cam1", after_id=4),
            lambda r: r.query(stream="site/*", limit=2),
            lambda r: r.counts(after_id=2),
            lambda r: r.ages(),
            lambda r: r.last_id(),
        ):
            assert ask(pg_reader) == ask(sqlite_reader)
        pg_reader.close()
        sqlite_reader.close()
    finally:
        writer.close()
        sqlite.close()


def test_any_text_and_number_survive_the_batch_as_written(db, tmp_path):
    """The batch travels as array literals: quotes, backslashes, braces, commas, NULL,
    empty and non-ASCII text, and the extreme bigints, read back as SQLite reads them."""
    odd = ['a"b', "c\\d", "{x,y}", "NULL", "", " sp ", "é ✓", '\\"', "tab\tnl\n"]
    batch = [
        ResultRecord(
            received_ns=i,
            consumer=text,
            stream="s/" + text,
            session=(1 << 63) - 1,
            seq=i,
            t_capture=0,
            t_start=(1 << 63) - 1,
            duration_ns=0,
            result={text: [text, -1.5, None, True, {"k": text}]},
        )
        for i, text in enumerate(odd)
    ]
    writer, sqlite = open_writer(db), open_writer(tmp_path / "r.sqlite")
    try:
        assert writer.add_many(batch) == batch
        sqlite.add_many(batch)
        pg_reader, sqlite_reader = open_reader(db), open_reader(tmp_path / "r.sqlite")
        stored = pg_reader.query()
        assert stored == sqlite_reader.query()
        assert [(r.consumer, r.stream, r.result) for r in stored] == [
            (r.consumer, r.stream, r.result) for r in batch
        ]
        assert writer.add_many(batch) == []  # keyed on the same text: nothing new
        pg_reader.close()
        sqlite_reader.close()
    finally:
        writer.close()
        sqlite.close()


def test_reader_never_creates_the_table(db):
    with pytest.raises(StoreError, match="no results table"):
        open_reader(db)
    assert query(db, "SELECT to_regclass('results')") == [(None,)]


def test_unreachable_server_is_a_clear_error():
    url = f"postgresql://fb:secret@127.0.0.1:{free_port()}/x"
    with pytest.raises(StoreError, match=r"cannot open results database .*fb:\*\*\*@") as err:
        PostgreSQLStore(url)
    assert "secret" not in str(err.value)
    assert redact("postgresql://u@h/d") == "postgresql://u@h/d"


def test_store_reconnects_after_the_server_restarts(server, db):
    store = PostgreSQLStore(db)
    try:
        store.add_many([record(0)])
        server.stop("immediate")
        with pytest.raises(StoreError):
            store.add_many([record(1)])
        server.start()
        assert store.add_many([record(1), record(0)]) == [record(1)]
    finally:
        store.close()
    assert query(db, "SELECT seq FROM results ORDER BY seq") == [(0,), (1,)]


def test_results_command_reads_postgresql(db):
    store = open_writer(db)
    store.add_many([record(i) for i in range(3)])
    store.close()
    out = subprocess.run(
        [sys.executable, "-m", "framebroker", "results", "--db", db, "--json", "--limit", "0"],
        capture_output=True,
        text=True,
        timeout=30,
        cwd=ROOT,
        check=True,
    ).stdout
    assert [json.loads(line)["seq"] for line in out.splitlines()] == [0, 1, 2]


def stored_keys(url: str) -> list[tuple[str, str, int, int]]:
    try:
        return query(url, "SELECT consumer, stream, session, seq FROM results")
    except Exception:  # the database restarting, or no table yet
        return []


@pytest.mark.slow
def test_two_sinks_a_killed_sink_and_a_restarted_database_lose_nothing(cli, server, db):
    ingest, publish, control = free_port(), free_port(), free_port()
    ports = [results_port(), results_port()]
    cli.start(
        "broker",
        *("--ingest", f"tcp://127.0.0.1:{ingest}", "--publish", f"tcp://127.0.0.1:{publish}"),
        *("--control", f"tcp://127.0.0.1:{control}"),
    )
    sinks = [cli.start("sink", "--results", f"tcp://127.0.0.1:{p}", "--db", db) for p in ports]
    source = ("test:160x120@20", "--ingest", f"tcp://127.0.0.1:{ingest}")
    producers = [cli.start("produce", *source, "--stream", f"pg/cam{i}") for i in range(2)]
    sink_set = ",".join(f"127.0.0.1:{p + 2}" for p in ports)
    consumer = cli.start(
        *("consume", "stats", "--streams", "pg/", "--name", "c1", "--print"),
        *("--publish", f"tcp://127.0.0.1:{publish}", "--sink", sink_set),
    )
    wait_until(lambda: len(stored_keys(db)) >= 40, timeout=30)

    sinks[0].send_signal(signal.SIGKILL)  # its unacknowledged results go to the other sink
    sinks[0].wait(10)
    before = len(stored_keys(db))
    wait_until(lambda: len(stored_keys(db)) >= before + 40, timeout=30)

    server.stop("immediate")  # the sink holds results and retries; the consumer keeps them
    time.sleep(2.0)
    server.start()
    before = len(stored_keys(db))
    wait_until(lambda: len(stored_keys(db)) >= before + 40, timeout=30)

    for proc in producers:
        assert cli.stop(proc) == 0
    assert cli.stop(consumer) == 0, cli.output(consumer)  # waits for the last acks
    assert cli.stop(sinks[1]) == 0, cli.output(sinks[1])

    made = printed_keys(cli.output(consumer))
    stored = stored_keys(db)
    print(f"\n{len(made)} made, {len(stored)} stored in PostgreSQL by 2 sinks")
    assert len(made) >= 120
    assert len(stored) == len(set(stored))  # nothing stored twice
    assert set(made) == set(stored)  # nothing lost
    assert "results not acknowledged" not in cli.output(consumer)
    assert "kept for retry" in cli.output(sinks[1])  # it did see the database go away


def test_the_sink_keeps_receiving_while_a_batch_commits_and_acks_only_after(db):
    """A commit held up (another session locks the table) stops the writer, not the loop:
    results keep being received, none is acknowledged until its batch commits."""
    import psycopg
    import zmq

    from framebroker.protocol import ResultMessage, decode_ack, encode_result
    from framebroker.sink import Sink, SinkConfig

    def message(seq: int) -> bytes:
        r = record(seq)
        return encode_result(
            ResultMessage(
                consumer=r.consumer,
                stream=r.stream,
                session=r.session,
                seq=seq,
                t_capture=r.t_capture,
                t_start=r.t_start,
                duration_ns=r.duration_ns,
                result=r.result,
                version=(1, 1),
                id=seq + 1,
            )
        )

    config = SinkConfig(
        results="tcp://127.0.0.1:0",
        acked_results="tcp://127.0.0.1:0",
        control=None,
        db=db,
        batch_size=10,
        flush_interval=0.05,
    )
    locker = psycopg.connect(db)
    ctx = zmq.Context()
    dealer = ctx.socket(zmq.DEALER)
    dealer.setsockopt(zmq.LINGER, 0)
    try:
        with Sink(config).run_in_thread() as sink:
            dealer.connect(sink.acked_results_endpoint)
            locker.execute("LOCK TABLE results IN EXCLUSIVE MODE")  # held until commit
            for seq in range(10):
                dealer.send(message(seq))
            wait_until(lambda: sink.stats().pending == 10, what="the first batch in flight")
            for seq in range(10, 40):
                dealer.send(message(seq))
            wait_until(lambda: sink.stats().received == 40, what="received during the commit")
            assert sink.stats().stored == 0
            assert not dealer.poll(300), "acknowledged before the commit"
            locker.commit()  # the lock goes; the batches commit
            acked: set[int] = set()
            while len(acked) < 40:
                assert dealer.poll(10_000), f"acknowledged {len(acked)} of 40"
                acked.update(decode_ack(dealer.recv()))
            assert acked == set(range(1, 41))
            assert sink.stats().stored == 40
        assert query(db, "SELECT count(*) FROM results") == [(40,)]
    finally:
        dealer.close()
        ctx.term()
        locker.close()
