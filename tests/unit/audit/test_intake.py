"""Consumed records -> ledger batches; checkpoints on schedule."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from services.audit.checkpoints import Schedule
from services.audit.intake import Checkpointer, Ingestor, to_batch
from services.audit.ledger import Ledger
from services.audit.metrics import AuditMetrics
from services.contracts.catalog import Catalog
from tests.unit.audit.support import encoded, entry, many


@dataclass
class Record:
    topic: str
    partition: int
    offset: int
    value: bytes | None


def records(catalog: Catalog, count: int, topic: str = "hub.audit.x") -> list[Record]:
    return [Record(topic, 0, i, encoded(catalog, d)) for i, d in enumerate(many(count))]


def test_garbage_on_the_audit_topic_is_skipped_with_its_digest_only(
    catalog: Catalog,
) -> None:
    batch = to_batch(
        catalog,
        [Record("hub.audit", 0, 4, b"\xc3\x01garbage"), Record("hub.audit", 0, 5, None)],
    )
    assert batch.entries == []
    assert [s.offset for s in batch.skipped] == [4, 5]
    assert batch.skipped[0].value_sha256 == hashlib.sha256(b"\xc3\x01garbage").hexdigest()
    assert "garbage" not in batch.skipped[0].reason
    assert batch.skipped[1].value_sha256 is None
    assert batch.positions == {("hub.audit", 0): 6}


def test_positions_are_the_next_offset_per_partition(catalog: Catalog) -> None:
    value = encoded(catalog, entry())
    batch = to_batch(
        catalog,
        [Record("t", 0, 9, value), Record("t", 1, 3, value), Record("t", 0, 10, value)],
    )
    assert batch.positions == {("t", 0): 11, ("t", 1): 4}
    assert len(batch.entries) == 3


async def test_ingesting_counts_appended_and_duplicate_entries(
    catalog: Catalog, ledger_path: Path
) -> None:
    registry = CollectorRegistry()
    ledger = Ledger.open_writer(ledger_path)
    ingestor = Ingestor(ledger, catalog, AuditMetrics(registry))
    batch = records(catalog, 5)
    await ingestor.ingest(batch)
    result = await ingestor.ingest(batch[2:])  # a redelivery
    assert (result.appended, result.duplicates, result.head.seq) == (0, 3, 5)
    value = registry.get_sample_value
    assert value("puente_audit_entries_appended_total") == 5
    assert value("puente_audit_duplicates_skipped_total") == 3
    assert value("puente_audit_ledger_entries") == 5
    ledger.close()


async def test_a_checkpoint_is_taken_only_when_something_is_new(
    catalog: Catalog, ledger_path: Path, key: Ed25519PrivateKey
) -> None:
    now = [0.0]
    ledger = Ledger.open_writer(ledger_path)
    metrics = AuditMetrics(CollectorRegistry())
    checkpointer = Checkpointer(
        ledger, key, Schedule(every=3, seconds=10.0), catalog.get("audit_checkpoint"),
        metrics, clock=lambda: now[0],
    )  # fmt: skip
    await Ingestor(ledger, catalog, metrics).ingest(records(catalog, 2))
    assert not checkpointer.due(2)
    now[0] = 10.0
    assert checkpointer.due(2)
    taken = checkpointer.take()
    assert taken is not None
    assert taken.seq == 2
    assert checkpointer.take() is None
    assert [c.seq for c in ledger.checkpoints()] == [2]
    ledger.close()


def test_a_checkpoint_record_carries_cloud_events_headers(
    catalog: Catalog, ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    checkpointer = Checkpointer(
        ledger, key, Schedule(1, 1.0), catalog.get("audit_checkpoint"),
        AuditMetrics(CollectorRegistry()),
    )  # fmt: skip
    point = ledger.checkpoints()[0]
    record_key, value, headers = checkpointer.record(point)
    names = dict(headers)
    assert record_key == ledger.ledger_id.encode()
    assert names["ce_type"] == b"audit_checkpoint"
    assert names["ce_time"] == point.time.encode()
    assert value[:2] == b"\xc3\x01"
    assert checkpointer.record(point)[2] == headers  # same ce_id when republished
