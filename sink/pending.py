"""The results the sink has received but not yet stored: one entry per result key.

A consumer on the acknowledged results port sends a result again every few seconds until
the sink acknowledges it. While the store cannot write (a full disk, a locked database)
nothing is acknowledged, so the same result keeps arriving; the store would ignore the
copies anyway (one row per consumer, stream, session and seq). Keeping one entry per key,
with the delivery ids to acknowledge once it is stored, bounds the sink's memory by the
distinct results waiting, not by how often they were resent.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

from .record import ResultRecord

ResultKey = tuple[str, str, int, int]  # consumer, stream, session, seq
Ack = tuple[bytes, int]  # the peer's routing id, the delivery id it gave the result

MAX_ACKS_PER_RESULT = 8  # delivery ids kept per result; a client that uses more resends


def key_of(record: ResultRecord) -> ResultKey:
    return (record.consumer, record.stream, record.session, record.seq)


class PendingResults:
    """Results waiting to be written, oldest first, each with who to acknowledge."""

    def __init__(self) -> None:
        self._records: dict[ResultKey, ResultRecord] = {}
        self._acks: dict[ResultKey, list[Ack]] = {}

    def __len__(self) -> int:
        return len(self._records)

    def __iter__(self) -> Iterator[ResultRecord]:
        return iter(self._records.values())

    def add(self, record: ResultRecord, ack: Ack | None) -> bool:
        """Keep ``record`` (and ``ack``); False when its key was already waiting (a resent
        copy: the first one is kept, the new delivery id acknowledged with it)."""
        key = key_of(record)
        new = key not in self._records
        if new:
            self._records[key] = record
        if ack is not None:
            acks = self._acks.setdefault(key, [])
            if ack not in acks:
                acks.append(ack)
                del acks[:-MAX_ACKS_PER_RESULT]
        return new

    def drop_oldest(self, n: int) -> int:
        """Forget the ``n`` oldest results (the store keeps failing); how many went."""
        doomed = list(self._records)[: max(0, n)]
        for key in doomed:
            del self._records[key]
            self._acks.pop(key, None)
        return len(doomed)

    def take(self) -> Batch:
        """Every waiting result (oldest first) and its acknowledgements, for one write;
        empties the set (what arrives meanwhile waits for the next batch)."""
        batch = Batch(list(self._records.values()), self._acks)
        self._records, self._acks = {}, {}
        return batch

    def restore(self, batch: Batch) -> None:
        """Put back a batch whose write failed, before what arrived since (oldest first);
        a result that arrived again meanwhile keeps the batch's copy and both ack lists."""
        records = {key_of(r): r for r in batch.records}
        acks = {key: list(a) for key, a in batch.acks.items()}
        for key, record in self._records.items():
            records.setdefault(key, record)
        for key, later in self._acks.items():
            merged = acks.setdefault(key, [])
            merged += [a for a in later if a not in merged]
            del merged[:-MAX_ACKS_PER_RESULT]
        self._records, self._acks = records, acks

    def clear(self) -> None:
        self._records.clear()
        self._acks.clear()


@dataclass(frozen=True)
class Batch:
    """Results taken out of :class:`PendingResults` for one write, with who to acknowledge."""

    records: list[ResultRecord]
    acks: dict[ResultKey, list[Ack]]

    def acks_by_peer(self) -> dict[bytes, list[int]]:
        by_peer: dict[bytes, list[int]] = {}
        for acks in self.acks.values():
            for peer, delivery in acks:
                by_peer.setdefault(peer, []).append(delivery)
        return by_peer
