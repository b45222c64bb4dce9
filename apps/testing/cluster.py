"""LocalCluster: a broker and a sink in this process, on free loopback ports, for tests.

The in-process counterpart of ``framebroker broker`` + ``framebroker sink``, made for a
user's processor tests (and this project's own): both services run in threads of the
test process on ports the OS picks, the sink stores into a SQLite file under a folder
the test owns, and everything is closed when the ``with`` block ends::

    with local_cluster(tmp_path) as cluster:
        with cluster.consumer(my_processor, streams=("cam1",)):
            cluster.publish(make_message("cam1", seq=0))
            (stored,) = cluster.wait_for_results(1)

Nothing here is a fake: the frames cross real ZeroMQ sockets, the consumer is the real
:class:`~framebroker.consumers.Consumer` and the results land in the sink's real
database, read back through the sink's own reader.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import zmq

from framebroker.broker import Broker, BrokerConfig
from framebroker.consumers import Consumer, ConsumerConfig, Frame
from framebroker.consumers.processors import Processor
from framebroker.errors import StoreError
from framebroker.protocol import FrameHeader, FrameMessage, encode_frame
from framebroker.sink import Sink, SinkConfig
from framebroker.sink.record import ResultRecord
from framebroker.sink.store import SQLiteStore

from .waiting import wait_until

LOOPBACK = "tcp://127.0.0.1:0"  # port 0: the OS picks a free port at bind time
_RESEND_S = 0.05  # publish(): how long to wait for the broker before sending again


class LocalCluster:
    """A running broker and sink; see :func:`local_cluster`, which makes and closes one."""

    def __init__(self, folder: Path, broker: Broker, sink: Sink) -> None:
        self.folder = folder
        self.db = Path(sink.config.db)
        self.broker = broker
        self.sink = sink
        self._ctx: zmq.Context[Any] = zmq.Context()
        self._pub: zmq.Socket[Any] | None = None
        self._reader: SQLiteStore | None = None
        self._consumers = 0

    # --- where to connect -----------------------------------------------------------

    @property
    def ingest(self) -> str:
        """Where producers send frames (the broker's ingest port)."""
        return self.broker.ingest_endpoint

    @property
    def publish_endpoint(self) -> str:
        """Where consumers subscribe."""
        return self.broker.publish_endpoint

    @property
    def control(self) -> str:
        """The broker's control port (``framebroker streams``, framebroker.control)."""
        return self.broker.control_endpoint

    @property
    def work(self) -> str:
        """Where workers of work groups ask for frames."""
        return self.broker.work_endpoint

    @property
    def results(self) -> str:
        """The sink's results port (PUSH, at most once)."""
        return self.sink.results_endpoint

    @property
    def acked_results(self) -> str:
        """The sink's acknowledged results port (at least once)."""
        endpoint = self.sink.acked_results_endpoint
        assert endpoint is not None, "local_cluster always binds the acknowledged port"
        return endpoint

    # --- frames in ------------------------------------------------------------------

    def publish(self, frame: FrameMessage | Frame, timeout: float = 10.0) -> None:
        """Send one frame to the broker; return once the broker has it as its newest.

        A new connection drops what is sent before it is up (ZeroMQ's "slow joiner"), so
        the frame is sent again every 50 ms until the broker reports it: subscribers may
        get it twice, and every framebroker receiver drops the repeat (same session and
        seq). A frame the broker refuses (malformed, over a limit) fails after ``timeout``.
        """
        header = frame.header
        data = encode_frame(header, frame.payload)
        pub = self._publisher()
        sent_at = float("-inf")

        def arrived() -> bool:
            nonlocal sent_at
            if time.monotonic() - sent_at >= _RESEND_S:
                pub.send(data)
                sent_at = time.monotonic()
            return self._broker_has(header)

        wait_until(arrived, timeout, f"the broker to take {header.stream} seq {header.seq}")

    def _broker_has(self, header: FrameHeader) -> bool:
        return any(
            (s.stream, s.session, s.seq) == (header.stream, header.session, header.seq)
            for s in self.broker.streams()
        )

    def _publisher(self) -> zmq.Socket[Any]:
        if self._pub is None:
            self._pub = self._ctx.socket(zmq.PUB)
            self._pub.setsockopt(zmq.LINGER, 0)
            self._pub.connect(self.ingest)
        return self._pub

    # --- consumers ------------------------------------------------------------------

    def consumer_config(self, **fields: Any) -> ConsumerConfig:
        """A ConsumerConfig pointed at this cluster (``fields`` override or add settings)."""
        self._consumers += 1
        defaults: dict[str, Any] = {
            "name": f"test-consumer-{self._consumers}",
            "publish": self.publish_endpoint,
            "work": self.work,
            "results": self.results,
            "acked_results": self.acked_results,
        }
        return ConsumerConfig(**(defaults | fields))

    @contextlib.contextmanager
    def consumer(self, processor: Processor, **fields: Any) -> Iterator[Consumer]:
        """Run ``processor`` in a real Consumer (in a thread) for the ``with`` block.

        ``fields`` are ConsumerConfig settings, e.g. ``streams=("cam1",)``, ``group=...``.
        On leaving, the consumer stops and sends its last results before this returns.
        """
        with Consumer(self.consumer_config(**fields), processor).run_in_thread() as consumer:
            yield consumer

    # --- results out ----------------------------------------------------------------

    def stored(self, stream: str | None = None, consumer: str | None = None) -> list[ResultRecord]:
        """Every result the sink has stored so far, oldest first (``stream``: a pattern)."""
        if self._reader is None:
            try:
                self._reader = SQLiteStore.open_existing(self.db)
            except StoreError:
                return []  # the sink creates the table on start; not there yet
        records = self._reader.query(stream=stream)
        return [r for r in records if consumer is None or r.consumer == consumer]

    def wait_for_results(
        self,
        count: int = 1,
        *,
        stream: str | None = None,
        consumer: str | None = None,
        timeout: float = 15.0,
    ) -> list[ResultRecord]:
        """The stored results once there are at least ``count`` (AssertionError if not)."""
        what = f"{count} stored result(s)" + (f" of {stream}" if stream else "")

        def enough() -> list[ResultRecord]:
            found = self.stored(stream, consumer)
            return found if len(found) >= count else []

        return wait_until(enough, timeout, what + (f" from {consumer}" if consumer else ""))

    def close(self) -> None:
        """Close the publisher, then the broker and the sink (which flushes first)."""
        if self._reader is not None:
            self._reader.close()
        if self._pub is not None:
            self._pub.close(linger=0)
        self._ctx.term()
        self.broker.close()
        self.sink.close()


@contextlib.contextmanager
def local_cluster(folder: str | Path, **broker_fields: Any) -> Iterator[LocalCluster]:
    """A broker and a sink running in this process until the block ends.

    Both bind free ports on 127.0.0.1; the sink stores into ``folder/results.sqlite``
    (flushing every 50 ms, so results show up fast). ``broker_fields`` are
    :class:`~framebroker.broker.BrokerConfig` settings (e.g. ``stale_after``).
    """
    db = Path(folder) / "results.sqlite"
    broker_config = {"ingest": LOOPBACK, "publish": LOOPBACK, "control": LOOPBACK}
    broker = Broker(BrokerConfig(**(broker_config | {"log_stats": 0.0} | broker_fields)))
    sink = Sink(SinkConfig(results=LOOPBACK, db=str(db), flush_interval=0.05))
    broker.run_in_thread()
    try:
        sink.run_in_thread()
    except BaseException:
        broker.close()
        raise
    cluster = LocalCluster(Path(folder), broker, sink)
    try:
        yield cluster
    finally:
        cluster.close()
