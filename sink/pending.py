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

    def batch(self) -> list[ResultRecord]:
        """Every waiting record, oldest first, for one write."""
        return list(self._records.values())

    def drop_oldest(self, n: int) -> int:
        """Forget the ``n`` oldest results (the store keeps failing); how many went."""
        doomed = list(self._records)[: max(0, n)]
        for key in doomed:
            del self._records[key]
            self._acks.pop(key, None)
        return len(doomed)

    def take_acks(self) -> dict[bytes, list[int]]:
        """After a successful write: every delivery id by peer; empties the set."""
        by_peer: dict[bytes, list[int]] = {}
        for acks in self._acks.values():
            for peer, delivery in acks:
                by_peer.setdefault(peer, []).append(delivery)
        self.clear()
        return by_peer

    def clear(self) -> None:
        self._records.clear()
        self._acks.clear()
