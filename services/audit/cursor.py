"""Which fetched hub.audit records the ledger still needs, by the ledger's own positions.

The ledger stores the next offset of every partition it read in the same
transaction as the entries; those positions are the truth. Kafka's committed
offsets are written after that transaction, only to report lag, so the consumer
may start (or, after a failure, deliver) from anywhere. `Cursor.admit` keeps
exactly the records the ledger does not hold yet and seeks every partition that
is not where the ledger left it:

- records below the ledger's position are redeliveries and are dropped; a
  partition whose records all lie below it is sought forward to it;
- a partition whose records start beyond the position (the consumer resumed from
  a committed offset the ledger never stored, e.g. the ledger file was replaced)
  is sought back to the position and its records are dropped: no gap;
- a partition without a stored position is read from the beginning of its log.

A partition the consumer reads on from where the ledger left off (its last
records were admitted and stored, with no seek since) may start a little beyond
the position: with routing in transactions, commit markers and aborted records
take offsets a ``read_committed`` consumer never returns. Those records are
taken as they come; seeking back would only fetch them again and warn.

After such a seek, the next records of that partition come from a fetch at the
sought offset (aiokafka discards whatever it fetched before the seek). If they
still do not start there, the log itself no longer has that offset (retention,
or a topic recreated on a broker that lost its data): they are taken as they
come, with a warning, instead of seeking for ever. Entries read twice that way
are skipped by their audit id.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Mapping, Sequence
from typing import Any, Protocol

from aiokafka import TopicPartition

from services.audit.ledger import Position

log = logging.getLogger(__name__)


class Consumer(Protocol):
    """What the cursor needs of an aiokafka consumer."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        """Read ``partitions`` from the start of their logs next."""


class Cursor:
    """The ledger's next offset per partition, and the seeks that keep to it."""

    def __init__(self, stored: Mapping[Position, int]) -> None:
        self._next: dict[Position, int] = dict(stored)
        # Partitions sought since their last records: the sought offset (None for
        # the beginning). Their next records are the broker's answer to the seek.
        self._sought: dict[Position, int | None] = {}
        # Partitions whose last records were admitted and stored, with no seek
        # since: the consumer reads on from the ledger's position.
        self._reading_on: set[Position] = set()

    @property
    def positions(self) -> dict[Position, int]:
        """The next offset the ledger expects, per partition it holds entries of."""
        return dict(self._next)

    async def admit(self, records: Sequence[Any], consumer: Consumer) -> list[Any]:
        """The records of a fetched batch the ledger lacks, in order; seeks the rest."""
        spans: dict[Position, tuple[int, int]] = {}
        for record in records:
            where = (record.topic, record.partition)
            first = spans[where][0] if where in spans else record.offset
            spans[where] = (first, record.offset)
        floors: dict[Position, int] = {}
        for where, (first, last) in spans.items():
            floor = await self._floor(where, first, last, consumer)
            if floor is not None:
                floors[where] = floor
        if all(floors.get(w) == first for w, (first, _) in spans.items()):
            return list(records)
        return [
            r
            for r in records
            if (floor := floors.get((r.topic, r.partition))) is not None
            and r.offset >= floor
        ]

    async def _floor(
        self, where: Position, first: int, last: int, consumer: Consumer
    ) -> int | None:
        """The lowest offset of the partition's records to keep; None: keep none."""
        tp = TopicPartition(*where)
        stored = self._next.get(where)
        if where in self._sought:
            self._reading_on.discard(where)
            target = self._sought.pop(where)
            if target is not None and first != target:
                _warn_missing(where, target, first)
            return first
        if stored is None:
            if first == 0:
                return first
            # Read from a committed offset the ledger never stored: start over.
            await consumer.seek_to_beginning(tp)
            self._sought[where] = None
            return None
        if first > stored and where in self._reading_on:
            return first  # transaction markers or aborted records in between
        if first > stored or last + 1 < stored:
            # Ahead of the ledger (would leave a gap), or all redeliveries (seeking
            # forward saves re-reading them): go to where the ledger left off.
            consumer.seek(tp, stored)
            self._sought[where] = stored
            self._reading_on.discard(where)
            return None
        return stored

    def advance(self, records: Iterable[Any]) -> dict[Position, int]:
        """Move past ``records`` once the ledger stored them; the partitions moved."""
        moved = {(r.topic, r.partition): r.offset + 1 for r in records}
        self._next.update(moved)
        self._reading_on.update(moved)
        return moved

    async def rewind(
        self,
        consumer: Consumer,
        partitions: Iterable[Position],
        stored: Mapping[Position, int] | None = None,
    ) -> None:
        """Seek ``partitions`` back to the ledger's positions (``stored``, if read)."""
        if stored is not None:
            self._next = dict(stored)
        for where in partitions:
            self._reading_on.discard(where)
            tp = TopicPartition(*where)
            offset = self._next.get(where)
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)
            self._sought[where] = offset


def _warn_missing(where: Position, wanted: int, found: int) -> None:
    topic, partition = where
    if found > wanted:
        # With transactions on, commit markers and aborted records take offsets a
        # read_committed consumer never returns: a gap there loses nothing.
        why = (
            "transaction markers or aborted records (routing in transactions), "
            "or records deleted before the ledger read them (retention?)"
        )
    else:
        why = (
            "the log ends before it: the topic was recreated or its broker lost "
            "data; entries already in the ledger are skipped by audit id"
        )
    log.warning(
        "%s[%d] has no record at the ledger's position %d, reading on from %d: %s",
        topic, partition, wanted, found, why,
    )  # fmt: skip
