"""BatchWriter: the sink's store writes, in a thread of their own.

A PostgreSQL commit is a network round trip plus the server's WAL flush. Written from the
sink's receive loop, the loop stops receiving for that time, so the sink's rate is
bounded by one batch per commit with idle sockets in between (measured 0.44x the SQLite
sink's rate with one sink). With the writer, the loop goes on receiving and decoding
while a batch commits; the next batch is whatever arrived meanwhile.

One batch is in flight at a time: batches commit in order, and a failed one goes back
to the front of the pending results. Acknowledgements still follow the commit: the
writer only hands the outcome back, and the loop (the one thread that may use the
ROUTER socket) acknowledges. The writer wakes the loop through an inproc PAIR socket
the loop polls with its other sockets.
"""

from __future__ import annotations

import contextlib
import itertools
import queue
import threading
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import zmq

from framebroker.errors import StoreError

from .base import ResultStore
from .pending import Batch
from .record import ResultRecord

_ids = itertools.count(1)


@dataclass(frozen=True)
class Outcome:
    """What became of a batch: the records that were new, or the error."""

    batch: Batch
    new: Sequence[ResultRecord] = ()
    error: StoreError | None = None


class BatchWriter:
    """Writes one batch at a time to ``store`` from its own thread."""

    def __init__(self, store: ResultStore, ctx: zmq.Context[Any]) -> None:
        self._store = store
        self._jobs: queue.SimpleQueue[Batch | None] = queue.SimpleQueue()
        self._done: queue.SimpleQueue[Outcome] = queue.SimpleQueue()
        address = f"inproc://framebroker-sink-writer-{next(_ids)}"
        self.wake = ctx.socket(zmq.PAIR)  # the loop polls this one
        self.wake.bind(address)
        self._signal = ctx.socket(zmq.PAIR)  # used by the writer thread only
        self._signal.connect(address)
        for sock in (self.wake, self._signal):
            sock.setsockopt(zmq.LINGER, 0)
        self.in_flight = 0  # results in the batch being written
        self._thread = threading.Thread(target=self._run, name="framebroker-sink-writer")
        self._thread.daemon = True
        self._thread.start()

    @property
    def busy(self) -> bool:
        return self.in_flight > 0

    def submit(self, batch: Batch) -> None:
        """Write ``batch`` in the background; collect the outcome with :meth:`outcome`."""
        if self.busy:
            raise RuntimeError("one batch at a time")
        self.in_flight = len(batch.records)
        self._jobs.put(batch)

    def outcome(self, timeout: float | None = 0.0) -> Outcome | None:
        """The finished batch's outcome, waiting up to ``timeout`` seconds (None: until it
        is written); None while it is still being written."""
        while True:
            try:
                self.wake.recv(zmq.NOBLOCK)
            except zmq.Again:
                break
        try:
            done = self._done.get_nowait() if timeout == 0 else self._done.get(timeout=timeout)
        except queue.Empty:
            return None
        self.in_flight = 0
        return done

    def _run(self) -> None:
        while (batch := self._jobs.get()) is not None:
            try:
                done = Outcome(batch, new=self._store.add_many(batch.records))
            except StoreError as exc:
                done = Outcome(batch, error=exc)
            except Exception as exc:  # a bug in a store must not wedge the sink silently
                done = Outcome(batch, error=StoreError(f"{type(exc).__name__}: {exc}"))
            self._done.put(done)
            with contextlib.suppress(zmq.Again):  # a wake-up is already waiting
                self._signal.send(b"", zmq.NOBLOCK)

    def close(self) -> None:
        """Stop the thread once the batch in flight (if any) is written; idempotent."""
        if self._thread.is_alive():
            self._jobs.put(None)
            self._thread.join()
        self._signal.close(linger=0)
        self.wake.close(linger=0)
