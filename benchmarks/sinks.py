"""Scenario 7, sinks: results/s stored and acknowledged, SQLite vs PostgreSQL with 1 and 2 sinks.

Real ``framebroker sink`` processes (default batching: 100 results or 0.2 s per transaction)
store into a SQLite file, or into a throwaway PostgreSQL 15 server (Debian's initdb and
pg_ctl; ``fsync=off``, so the figures are the sink's and the driver's, not the disk's).
One client in this process speaks protocol v1.1 as ``framebroker consume --sink`` does: one
DEALER (``ZMQ_IMMEDIATE``) connected to every sink's acknowledged results port, up to
``WINDOW`` results in flight, each kept until its acknowledgement arrives (which the sink
sends only after the commit). The figure is results acknowledged per second, first send to
last acknowledgement; afterwards the table must hold every result exactly once.
"""

from __future__ import annotations

import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import zmq

from benchmarks.report import Options, Result, Target
from framebroker.protocol import VERSION_ACKED, ResultMessage, decode_ack, encode_result
from framebroker.sink.store import open_reader
from framebroker.testing.postgres import PostgresServer

WINDOW = 5000  # results sent and not yet acknowledged, at most
SETUPS = (("SQLite", 1), ("PostgreSQL", 1), ("PostgreSQL", 2))


def _free_port() -> int:
    """A free port P with P + 2 free too (the sink's acknowledged results port)."""
    while True:
        with socket.socket() as a:
            a.bind(("127.0.0.1", 0))
            port = int(a.getsockname()[1])
        try:
            with socket.socket() as b:
                b.bind(("127.0.0.1", port + 2))
            return port
        except OSError:
            continue


def _listening(port: int) -> bool:
    with socket.socket() as s:
        return s.connect_ex(("127.0.0.1", port)) == 0


def _message(seq: int) -> bytes:
    now = time.time_ns()
    result = {"width": 640, "height": 480, "brightness": 117.5, "objects": [[10, 20, 30, 40]]}
    message = ResultMessage(
        "bench", "bench/cam", 1, seq, now, now, 1_000_000, result, VERSION_ACKED, seq + 1
    )
    return encode_result(message)


def _send_all(endpoints: list[str], count: int) -> float:
    """Send ``count`` results with acknowledged delivery; seconds until the last ack."""
    ctx = zmq.Context()
    sock = ctx.socket(zmq.DEALER)
    sock.setsockopt(zmq.IMMEDIATE, 1)
    sock.setsockopt(zmq.LINGER, 0)
    sock.setsockopt(zmq.SNDHWM, WINDOW * 2)
    for endpoint in endpoints:
        sock.connect(endpoint)
    messages = [_message(seq) for seq in range(count)]
    time.sleep(0.5)  # every connection up (IMMEDIATE: sends go to connected sinks only)
    acked: set[int] = set()
    sent = 0
    began = time.perf_counter()
    try:
        while len(acked) < count:
            while sent < count and sent - len(acked) < WINDOW:
                sock.send(messages[sent])
                sent += 1
            if sock.poll(10_000) == 0:
                raise RuntimeError(f"no acknowledgement for 10 s ({len(acked)}/{count})")
            while True:
                try:
                    acked.update(decode_ack(sock.recv(zmq.NOBLOCK)))
                except zmq.Again:
                    break
        return time.perf_counter() - began
    finally:
        sock.close()
        ctx.term()


def measure(db: str, sinks: int, count: int, folder: Path) -> dict[str, Any]:
    procs: list[subprocess.Popen[bytes]] = []
    ports = [_free_port() for _ in range(sinks)]
    try:
        for i, port in enumerate(ports):
            log = open(folder / f"sink-{len(list(folder.iterdir()))}-{i}.log", "wb")  # noqa: SIM115
            argv = [sys.executable, "-m", "framebroker", "sink", "--db", db]
            procs.append(
                subprocess.Popen(
                    [*argv, "--results", f"tcp://127.0.0.1:{port}"],
                    stdout=log,
                    stderr=subprocess.STDOUT,
                )
            )
            log.close()
        deadline = time.monotonic() + 30
        while not all(_listening(p + 2) for p in ports):
            if time.monotonic() > deadline or any(p.poll() is not None for p in procs):
                raise RuntimeError(f"sinks on {db} did not start (logs in {folder})")
            time.sleep(0.05)
        seconds = _send_all([f"tcp://127.0.0.1:{p + 2}" for p in ports], count)
    finally:
        for proc in procs:
            proc.terminate()
        for proc in procs:
            proc.wait(30)
    reader = open_reader(db)
    try:
        stored = sum(reader.counts().values())
    finally:
        reader.close()
    return {"seconds": seconds, "per_s": count / seconds, "stored": stored}


def run(opts: Options) -> Result:
    count = opts.pick(3000, 200_000)  # a few seconds each: shorter runs swing by +-20 %
    rows: list[list[Any]] = []
    data: dict[str, Any] = {}
    with tempfile.TemporaryDirectory(prefix="fb-bench-sinks-") as tmp:
        folder = Path(tmp)
        pg = PostgresServer()
        try:
            pg.init()
            pg.start()
            for n, (store, sinks) in enumerate(SETUPS):
                if store == "SQLite":
                    db = str(folder / f"results-{n}.sqlite")
                else:
                    db = pg.create_database(f"bench{n}")
                figures = measure(db, sinks, count, folder)
                if figures["stored"] != count:
                    raise RuntimeError(f"{store} x{sinks}: {figures['stored']} of {count} stored")
                data[f"{store.lower()}_{sinks}"] = figures
                rows.append([store, sinks, count, figures["seconds"], figures["per_s"]])
        finally:
            pg.close()
    base = data["sqlite_1"]["per_s"]
    notes = [
        "acknowledged results/s: first send to last acknowledgement, each acknowledged "
        "after its batch committed; every result stored exactly once (checked)",
        f"PostgreSQL vs SQLite, 1 sink: {data['postgresql_1']['per_s'] / base:.2f} x; "
        f"2 sinks: {data['postgresql_2']['per_s'] / base:.2f} x "
        "(sinks, client and server share the machine's cores)",
    ]
    # The issue: writes into PostgreSQL keep up with the SQLite sink's rate.
    targets = [
        Target(
            "PostgreSQL, 2 sinks / SQLite results/s",
            data["postgresql_2"]["per_s"] / base,
            1.0,
            "higher",
        ),
        Target(
            "PostgreSQL, 1 sink / SQLite results/s",
            data["postgresql_1"]["per_s"] / base,
            0.75,
            "higher",
        ),
    ]
    return Result(
        name="sinks",
        targets=targets,
        title="7. Sinks: results/s into SQLite and PostgreSQL",
        columns=["store", "sinks", "results", "seconds", "results/s"],
        rows=rows,
        data=data,
        notes=notes,
    )
