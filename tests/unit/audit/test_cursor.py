"""Fetched records -> the ones the ledger lacks, by the ledger's own positions."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import pytest
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.audit.cursor import Cursor
from services.audit.intake import Ingestor
from services.audit.ledger import Ledger
from services.audit.metrics import AuditMetrics
from services.audit.verify import verify
from services.contracts.catalog import Catalog
from tests.unit.audit.support import encoded, many

TOPIC = "hub.audit.x"
P0, P1 = TopicPartition(TOPIC, 0), TopicPartition(TOPIC, 1)


@dataclass(frozen=True)
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None = None


def span(tp: TopicPartition, first: int, last: int) -> list[Record]:
    return [Record(tp.topic, tp.partition, o) for o in range(first, last + 1)]


def offsets(records: list[Record], tp: TopicPartition) -> list[int]:
    return [r.offset for r in records if r.partition == tp.partition]


@dataclass
class Log:
    """Partitions of audit records and a consumer reading them like aiokafka does.

    A fetch returns records from the consumer's position; a seek moves it (past the
    end of the log, the next fetch starts at the log's start, as earliest reset).
    """

    records: dict[TopicPartition, list[Record]]
    position: dict[TopicPartition, int]
    seeks: list[tuple[TopicPartition, int | None]] = field(default_factory=list)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        self.seeks.append((partition, offset))
        self.position[partition] = offset

    async def seek_to_beginning(self, *partitions: TopicPartition) -> bool:
        for tp in partitions:
            self.seeks.append((tp, None))
            self.position[tp] = self.start(tp)
        return True

    def start(self, tp: TopicPartition) -> int:
        return self.records[tp][0].offset if self.records[tp] else 0

    def fetch(self, max_records: int) -> list[Record]:
        batch: list[Record] = []
        for tp, log in self.records.items():
            end = log[-1].offset + 1 if log else 0
            if self.position[tp] > end:
                self.position[tp] = self.start(tp)
            wanted = [r for r in log if r.offset >= self.position[tp]][:max_records]
            if wanted:
                self.position[tp] = wanted[-1].offset + 1
            batch.extend(wanted)
        return batch


def audit_log(
    catalog: Catalog, tp: TopicPartition, count: int, start: int = 0
) -> list[Record]:
    return [
        Record(tp.topic, tp.partition, start + i, encoded(catalog, d))
        for i, d in enumerate(many(count))
    ]


async def test_redelivered_records_below_the_ledgers_position_are_dropped() -> None:
    log = Log({P0: span(P0, 0, 9)}, {P0: 3})
    cursor = Cursor({(TOPIC, 0): 5})

    admitted = await cursor.admit(log.fetch(10), log)

    assert offsets(admitted, P0) == [5, 6, 7, 8, 9]
    assert log.seeks == []


async def test_a_partition_wholly_behind_the_ledger_is_sought_forward() -> None:
    log = Log({P0: span(P0, 0, 19)}, {P0: 0})
    cursor = Cursor({(TOPIC, 0): 12})

    assert await cursor.admit(log.fetch(4), log) == []
    assert log.seeks == [(P0, 12)]
    assert offsets(await cursor.admit(log.fetch(4), log), P0) == [12, 13, 14, 15]


async def test_a_partition_ahead_of_the_ledger_is_sought_back_and_others_go_on() -> None:
    log = Log({P0: span(P0, 0, 19), P1: span(P1, 0, 4)}, {P0: 15, P1: 0})
    cursor = Cursor({(TOPIC, 0): 10})

    first = await cursor.admit(log.fetch(10), log)
    again = await cursor.admit(log.fetch(10), log)

    assert offsets(first, P0) == []
    assert offsets(first, P1) == [0, 1, 2, 3, 4]  # no position stored, starts at 0
    assert log.seeks == [(P0, 10)]
    assert offsets(again, P0) == list(range(10, 20))


async def test_a_partition_without_a_position_is_read_from_the_beginning() -> None:
    log = Log({P0: span(P0, 0, 9)}, {P0: 6})  # e.g. a committed offset of an old ledger
    cursor = Cursor({})

    assert await cursor.admit(log.fetch(10), log) == []
    assert log.seeks == [(P0, None)]
    assert offsets(await cursor.admit(log.fetch(10), log), P0) == list(range(10))


async def test_offsets_the_log_no_longer_has_are_taken_as_the_broker_answers(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log({P0: span(P0, 8, 11)}, {P0: 9})  # 5..7 were deleted by retention
    cursor = Cursor({(TOPIC, 0): 5})

    assert await cursor.admit(log.fetch(10), log) == []  # ahead: sought back to 5
    with caplog.at_level(logging.WARNING):
        admitted = await cursor.admit(log.fetch(10), log)  # the log starts at 8
        assert offsets(admitted, P0) == [8, 9, 10, 11]
    assert "no record at the ledger's position 5, reading on from 8" in caplog.text
    assert log.seeks == [(P0, 5)]  # once: no seeking for ever


async def test_a_log_shorter_than_the_ledgers_position_is_read_again_from_its_start(
    caplog: pytest.LogCaptureFixture,
) -> None:
    log = Log({P0: span(P0, 0, 3)}, {P0: 0})  # the topic was recreated
    cursor = Cursor({(TOPIC, 0): 100})

    assert await cursor.admit(log.fetch(10), log) == []
    with caplog.at_level(logging.WARNING):
        assert offsets(await cursor.admit(log.fetch(10), log), P0) == [0, 1, 2, 3]
    assert "the topic was recreated" in caplog.text


async def test_a_consumer_ahead_of_a_replaced_ledger_appends_nothing_twice_and_no_gap(
    catalog: Catalog, ledger_path: Path
) -> None:
    registry = CollectorRegistry()
    ledger = Ledger.open_writer(ledger_path)
    ingestor = Ingestor(ledger, catalog, AuditMetrics(registry))
    entries = audit_log(catalog, P0, 60)
    # The ledger holds the first 20 (an older copy); Kafka's committed offset is 45.
    await ingestor.ingest(entries[:20])
    log = Log({P0: entries}, {P0: 45})
    cursor = Cursor(ledger.positions())

    for _ in range(10):
        fresh = await cursor.admit(log.fetch(7), log)
        if fresh:
            await ingestor.ingest(fresh)
            cursor.advance(fresh)
        # The consumer also redelivers what it read before, as after a restart.
        if log.position[P0] == 34:
            log.seek(P0, 28)

    rows = list(ledger.rows())
    assert [r.seq for r in rows] == list(range(1, 61))
    assert len({r.audit_id for r in rows}) == 60
    assert registry.get_sample_value("puente_audit_duplicates_skipped_total") == 0
    assert ledger.positions() == cursor.positions == {(TOPIC, 0): 60}
    assert verify(rows, [], {}, ledger_id=ledger.ledger_id).ok
    ledger.close()


async def test_a_rewind_seeks_back_to_the_positions_the_ledger_stored() -> None:
    log = Log({P0: span(P0, 0, 9), P1: span(P1, 0, 9)}, {P0: 0, P1: 0})
    cursor = Cursor({(TOPIC, 0): 0})
    admitted = await cursor.admit(log.fetch(5), log)
    assert len(admitted) == 10
    # The ledger could not take the batch: it still holds what it held before.
    await cursor.rewind(log, {(TOPIC, 0), (TOPIC, 1)}, {(TOPIC, 0): 0})

    assert sorted(log.seeks, key=str) == sorted([(P0, 0), (P1, None)], key=str)
    again = await cursor.admit(log.fetch(5), log)
    assert offsets(again, P0) == offsets(again, P1) == [0, 1, 2, 3, 4]


async def test_reading_on_past_transaction_markers_takes_the_records_without_a_seek(
    caplog: pytest.LogCaptureFixture,
) -> None:
    # Offsets 5 and 11 are commit markers: a read_committed consumer never returns them.
    log = Log({P0: [*span(P0, 0, 4), *span(P0, 6, 10), *span(P0, 12, 14)]}, {P0: 0})
    cursor = Cursor({})

    for _ in range(3):
        cursor.advance(await cursor.admit(log.fetch(5), log))

    assert cursor.positions == {(TOPIC, 0): 15}
    assert log.seeks == []
    assert "no record at the ledger's position" not in caplog.text


async def test_a_consumer_that_did_not_read_on_from_the_ledger_is_still_sought_back() -> (
    None
):
    # The ledger stored 6 but the consumer starts at a committed offset of 9: no
    # record of this process moved it there, so the records between are fetched.
    log = Log({P0: span(P0, 0, 14)}, {P0: 9})
    cursor = Cursor({(TOPIC, 0): 6})

    assert await cursor.admit(log.fetch(5), log) == []
    assert log.seeks == [(P0, 6)]
    assert offsets(await cursor.admit(log.fetch(5), log), P0) == [6, 7, 8, 9, 10]
