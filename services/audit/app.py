"""Build the audit service: a batch consumer of hub.audit into the ledger, plus its API.

Consumption uses manual assignment of every partition of the audit topic, not a
group subscription: the ledger is one file with one writer, so no second member
may ever take a partition over, and positions come from the ledger itself (stored
in the same transaction as the entries), not from Kafka's committed offsets. The
group id is still used to commit offsets after each batch, so lag monitoring that
reads committed offsets works.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from typing import Any, Final

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from services.audit.api import audit_app
from services.audit.checkpoints import CHECKPOINT_SCHEMA, Schedule
from services.audit.handlers import Checkpointer, Ingestor
from services.audit.keys import development_key, parse_private_key, read_key_file
from services.audit.ledger import Ledger
from services.audit.metrics import AuditMetrics
from services.audit.settings import AuditSettings
from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.runtime import topics as runtime_topics
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.ops import OpsServer

log = logging.getLogger(__name__)
CLIENT_ID: Final = "puente-audit"
_POLL_MS: Final = 250
_STOP_TIMEOUT: Final = 30.0


class AuditTopicMissingError(PuenteError):
    """The audit topic has no partitions on the broker (it could not be created)."""

    retriable = True


def signing_key(settings: AuditSettings) -> Ed25519PrivateKey:
    """The configured key, else the key file, else a development key (generated once)."""
    if settings.signing_key is not None:
        return parse_private_key(settings.signing_key.get_secret_value().encode())
    if settings.signing_key_file is not None:
        return parse_private_key(read_key_file(settings.signing_key_file))
    return development_key(settings.development_key_file)


class AuditService:
    """The audit process: ingest, checkpoint, answer queries."""

    def __init__(self, settings: AuditSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.catalog = Catalog.load(settings.hub.schemas_dir)
        self.checkpoint_entry = self.catalog.get(CHECKPOINT_SCHEMA, 1)
        self.key = signing_key(settings)
        self.metrics = AuditMetrics(registry)
        self.schedule = Schedule(settings.checkpoint_every, settings.checkpoint_seconds)
        app = audit_app(settings.ledger_file, registry, self.health)
        self.ops = OpsServer(app, settings.port, settings.host)
        self.ledger: Ledger | None = None
        self.consumer: AIOKafkaConsumer | None = None
        self.producer: AIOKafkaProducer | None = None
        self.checkpointer: Checkpointer | None = None
        self._task: asyncio.Task[None] | None = None
        self._stopping = asyncio.Event()
        self._head_seq = 0

    def health(self) -> dict[str, Any]:
        """Readiness for /health: running, and the ledger's progress."""
        running = self._task is not None and not self._task.done()
        last = self.checkpointer.last_seq if self.checkpointer else 0
        return {"ok": running, "entries": self._head_seq, "last_checkpoint_seq": last}

    async def start(self) -> None:
        """Create topics, open the ledger, resume at its positions, start ingesting."""
        try:
            await self._start()
        except BaseException:
            # Release the ledger lock and the port so a retry (or the next run) can start.
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        await runtime_topics.create(
            s.kafka, {s.topic: s.topics.audit_partitions, s.checkpoint_topic: 1}
        )
        self.ledger = await asyncio.to_thread(Ledger.open_writer, s.ledger_file)
        self._head_seq = self.ledger.head().seq
        self.metrics.entries.set(self._head_seq)
        self.checkpointer = Checkpointer(
            self.ledger, self.key, self.schedule, self.checkpoint_entry, self.metrics
        )
        await self.ops.start()
        self.producer = AIOKafkaProducer(**producer_config(s.kafka, CLIENT_ID))
        await self.producer.start()
        self.consumer = AIOKafkaConsumer(
            **consumer_config(s.kafka, s.group_id, CLIENT_ID)
        )
        await self.consumer.start()
        await self._resume(self.consumer, self.ledger)
        await self._publish_checkpoints()
        self._stopping.clear()
        ingestor = Ingestor(self.ledger, self.catalog, self.metrics)
        self._task = asyncio.create_task(
            self._run(self.consumer, self.checkpointer, ingestor), name="audit-ingest"
        )
        self._task.add_done_callback(_report_failure)
        log.info("audit ledger at seq %d, consuming %s", self._head_seq, s.topic)

    async def _resume(self, consumer: AIOKafkaConsumer, ledger: Ledger) -> None:
        await consumer.topics()  # loads metadata so partitions_for_topic answers
        numbers = sorted(consumer.partitions_for_topic(self.settings.topic) or ())
        if not numbers:
            raise AuditTopicMissingError(f"topic {self.settings.topic} has no partitions")
        partitions = [TopicPartition(self.settings.topic, n) for n in numbers]
        consumer.assign(partitions)
        stored = ledger.positions()
        for tp in partitions:
            offset = stored.get((tp.topic, tp.partition))
            if offset is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, offset)

    async def _run(
        self, consumer: AIOKafkaConsumer, checkpointer: Checkpointer, ingestor: Ingestor
    ) -> None:
        while not self._stopping.is_set():
            batches = await consumer.getmany(
                timeout_ms=_POLL_MS, max_records=self.settings.max_batch
            )
            records = [r for rs in batches.values() for r in rs]
            if records:
                result = await ingestor.ingest(records)
                self._head_seq = result.head.seq
                await _commit(consumer, batches)
            await self._update_lag(consumer)
            if checkpointer.due(self._head_seq):
                await asyncio.to_thread(checkpointer.take)
                await self._publish_checkpoints()

    async def _update_lag(self, consumer: AIOKafkaConsumer) -> None:
        # highwater(), not end_offsets(): the latter is wrong on the embedded broker.
        lag = 0
        for tp in consumer.assignment():
            high = consumer.highwater(tp)
            if high is not None:
                lag += max(high - await consumer.position(tp), 0)
        self.metrics.lag.set(lag)

    async def _publish_checkpoints(self) -> None:
        if self.checkpointer is None or self.producer is None:
            return
        try:
            await self.checkpointer.publish_pending(
                self.producer, self.settings.checkpoint_topic
            )
        except KafkaError as e:
            # Stored already; publishing is retried after the next batch or checkpoint.
            log.warning("could not publish audit checkpoints yet: %s", e)

    async def stop(self) -> None:
        """Finish the batch in hand, sign a last checkpoint, then close everything."""
        self._stopping.set()
        if self._task is not None:
            # Its failure, if any, was logged when it ended; stopping goes on regardless.
            with contextlib.suppress(
                asyncio.CancelledError, TimeoutError, PuenteError, KafkaError
            ):
                await asyncio.wait_for(self._task, _STOP_TIMEOUT)
        await self._last_checkpoint()
        for client in (self.consumer, self.producer):
            if client is not None:
                await client.stop()
        await self.ops.stop()
        if self.ledger is not None:
            self.ledger.close()
        self.consumer = self.producer = self.ledger = self.checkpointer = None

    async def _last_checkpoint(self) -> None:
        if self.checkpointer is None:
            return
        try:
            taken = self.checkpointer.take()
        except PuenteError as e:
            log.warning("no final checkpoint: %s", e)
            return
        if taken is not None and self.producer is not None and self._task is not None:
            await self._publish_checkpoints()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; raise if ingestion fails first."""
        await self.start()
        task = self._task
        try:
            waiter = asyncio.create_task(stop.wait())
            watched: set[asyncio.Future[Any]] = (
                {waiter} if task is None else {waiter, task}
            )
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            waiter.cancel()
            if task is not None and task.done() and not task.cancelled():
                task.result()  # re-raises the ingestion failure
        finally:
            await self.stop()


async def _commit(
    consumer: AIOKafkaConsumer, batches: dict[TopicPartition, list[Any]]
) -> None:
    # Progress report for lag monitoring only: the ledger's positions are the truth.
    offsets = {tp: rs[-1].offset + 1 for tp, rs in batches.items() if rs}
    try:
        await consumer.commit(offsets)
    except KafkaError as e:
        log.debug("offset commit for lag monitoring failed: %s", e)


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("audit ingestion stopped: %s: %s", type(error).__name__, error)


def build_service(settings: AuditSettings, registry: CollectorRegistry) -> AuditService:
    """The audit service for ``settings`` with metrics on ``registry``."""
    return AuditService(settings, registry)
