"""Ingest consumed hub.audit batches into the ledger, and take signed checkpoints."""

from __future__ import annotations

import asyncio
import hashlib
import logging
import time
import uuid
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit import chain, witness
from services.audit.checkpoints import Checkpoint, Schedule, sign, to_datum
from services.audit.ledger import AppendResult, Head, Ledger, Position, Skipped
from services.audit.metrics import AuditMetrics
from services.contracts import admission, codec, headers
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError
from services.contracts.natural import codec_for

log = logging.getLogger(__name__)
# Checkpoint record ids are derived, so a republished checkpoint keeps its ce_id.
CHECKPOINT_NAMESPACE: Final = uuid.UUID("1f6b7e0c-5d0a-4d7e-8a43-6c2d3b9e0c11")


@dataclass
class Batch:
    """What one consumed batch turns into, before it touches the ledger."""

    entries: list[chain.Prepared] = field(default_factory=list)
    skipped: list[Skipped] = field(default_factory=list)
    positions: dict[Position, int] = field(default_factory=dict)


def to_batch(catalog: Catalog, records: Iterable[Any]) -> Batch:
    """Decode consumer records into prepared entries, skipped records and positions."""
    batch = Batch()
    for record in records:
        where = (record.topic, record.partition)
        batch.positions[where] = max(batch.positions.get(where, 0), record.offset + 1)
        value: bytes = record.value or b""
        try:
            batch.entries.append(_prepare(catalog, value))
        except ContractError as e:
            # Codec messages name fields and expectations, never values.
            reason = f"{type(e).__name__}: {e}"[:300]
            digest = hashlib.sha256(value).hexdigest() if value else None
            batch.skipped.append(Skipped(*where, record.offset, reason, digest))
    return batch


def _prepare(catalog: Catalog, value: bytes) -> chain.Prepared:
    """An audit record's entry, refused by the same checks the router admits by."""
    entry, plain = codec.decode(catalog, value, plain=True)
    chain.check_admissible(entry)
    admission.check_entry(plain)
    # Admitted, its logical values convert; read again as fastavro gives them.
    datum = codec.read_body(entry, value)
    return chain.prepare(codec_for(entry).to_natural(datum))


class Ingestor:
    """Appends batches to the ledger and keeps the ingestion metrics."""

    def __init__(self, ledger: Ledger, catalog: Catalog, metrics: AuditMetrics) -> None:
        self.ledger = ledger
        self.catalog = catalog
        self.metrics = metrics

    async def ingest(self, records: Sequence[Any]) -> AppendResult:
        """Append one batch (entries and positions in one transaction)."""
        batch = to_batch(self.catalog, records)
        # The fsync of a FULL-synchronous commit must not stall /health and the API.
        result = await asyncio.to_thread(
            self.ledger.append, batch.entries, batch.skipped, batch.positions
        )
        self.metrics.appended.inc(result.appended)
        self.metrics.duplicates.inc(result.duplicates)
        self.metrics.entries.set(result.head.seq)
        if batch.skipped:
            self.metrics.skipped.inc(len(batch.skipped))
            first = batch.skipped[0]
            log.warning(
                "%d records were not audit entries (first: %s[%d]@%d, %s)",
                len(batch.skipped), first.topic, first.partition, first.offset,
                first.reason,
            )  # fmt: skip
        return result


class Checkpointer:
    """Signs the chain head on schedule, stores it, then publishes it."""

    def __init__(
        self,
        ledger: Ledger,
        key: Ed25519PrivateKey,
        schedule: Schedule,
        entry: SchemaEntry,
        metrics: AuditMetrics,
        *,
        witness: Path | None = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self.ledger = ledger
        self.witness = witness
        self.key = key
        self.schedule = schedule
        self.entry = entry
        self.metrics = metrics
        self.clock = clock
        self.ledger_id = ledger.ledger_id
        self.last_seq = ledger.last_checkpoint_seq()
        self.last_time = clock()

    def due(self, head_seq: int) -> bool:
        """Whether the schedule asks for a checkpoint of ``head_seq`` now."""
        return self.schedule.due(head_seq, self.last_seq, self.clock() - self.last_time)

    def take(self) -> Checkpoint | None:
        """Sign and store a checkpoint of the current head, if it has anything new."""
        head = self.ledger.head()
        self.last_time = self.clock()
        if head.seq <= self.last_seq:
            return None
        checkpoint = sign(
            self.key, self.ledger_id, head.seq, head.hash, datetime.now(UTC)
        )
        self.ledger.add_checkpoint(checkpoint)
        self.last_seq = head.seq
        self.metrics.checkpoints.inc()
        self._witness(witness.head_line(checkpoint, "checkpoint"))
        log.info("checkpoint at seq %d signed by key %s", head.seq, checkpoint.key_id)
        return checkpoint

    def witness_head(self, head: Head) -> None:
        """Append the signed head after a batch to the witness file, if there is one.

        Every batch, not only checkpoints: entries appended after the last
        checkpoint cannot then be cut unnoticed either.
        """
        if self.witness is None:
            return
        signed = sign(self.key, self.ledger_id, head.seq, head.hash, datetime.now(UTC))
        self._witness(witness.head_line(signed, "head"))

    def _witness(self, line: str) -> None:
        if self.witness is None:
            return
        try:
            witness.append(self.witness, line)
        except witness.WitnessError:
            # The ledger has the entries; the next batch's head covers these too.
            self.metrics.witness_failures.inc()
            log.exception("a signed head was not witnessed")

    def record(
        self, checkpoint: Checkpoint
    ) -> tuple[bytes, bytes, list[tuple[str, bytes]]]:
        """Key, value and headers of the checkpoint's record on the checkpoint topic."""
        ce_id = uuid.uuid5(
            CHECKPOINT_NAMESPACE, f"{checkpoint.ledger_id}:{checkpoint.seq}"
        )
        event = headers.CloudEvent(
            str(ce_id), "puente", "audit_checkpoint", checkpoint.time
        )
        value = codec.encode(self.entry, to_datum(checkpoint))
        return checkpoint.ledger_id.encode(), value, headers.build(event)

    async def publish_pending(self, producer: AIOKafkaProducer, topic: str) -> int:
        """Publish every stored checkpoint not yet acknowledged; return how many."""
        pending = self.ledger.checkpoints(unpublished_only=True)
        for checkpoint in pending:
            key, value, kafka_headers = self.record(checkpoint)
            await producer.send_and_wait(topic, value, key=key, headers=kafka_headers)
            self.ledger.mark_published(checkpoint.seq)
        return len(pending)
