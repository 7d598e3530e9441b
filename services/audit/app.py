"""Build the audit service: the shared batch loop from hub.audit into the ledger.

The loop is assigned every partition of the audit topic explicitly rather
than joining a group: the ledger is one file with one writer, so no second member
may ever take a partition over. Positions come from the ledger itself (stored in
the same transaction as the entries), not from Kafka's committed offsets: each
batch keeps only the records the ledger lacks and seeks any partition that is not
where the ledger left off (`services.audit.cursor`), so every record is appended
exactly once. The group id is still used to commit offsets after each batch, so
lag monitoring that reads committed offsets works.

A batch the ledger cannot take is read again (its partitions are sought back to
the ledger's positions), logged and counted by the loop; `run_until` ends with
that error.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any, Final

from aiokafka import AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry

from services.audit import witness
from services.audit.api import ApiConfig, audit_app
from services.audit.checkpoints import CHECKPOINT_SCHEMA, Schedule
from services.audit.cursor import Cursor
from services.audit.intake import Checkpointer, Ingestor
from services.audit.keys import (
    development_key,
    key_id,
    parse_private_key,
    raw_public,
    read_key_file,
)
from services.audit.ledger import Ledger, LedgerError, Position
from services.audit.metrics import AuditMetrics
from services.audit.rotation import Rotation, sign_rotation
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys
from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.runtime import topic_admin as runtime_topics
from services.runtime.consume import (
    DEFAULT_STOP_SECONDS,
    BatchLoop,
    Consumer,
    LoopMetrics,
    Offsets,
    Subscription,
)
from services.runtime.kafka import producer_config
from services.runtime.ops import OpsServer

log = logging.getLogger(__name__)
CLIENT_ID: Final = "puente-audit"
# How often time-based checkpoints are considered while no batch arrives.
_TICK_SECONDS: Final = 0.25
# How long a stop waits for the batch, checkpoint or ledger write in hand.
_STOP_TIMEOUT: Final = DEFAULT_STOP_SECONDS


# The checkpoint topic anchors the ledger from outside: kept without time limit.
CHECKPOINT_TOPIC_CONFIG: Final = {"retention.ms": "-1"}


class AuditTopicMissingError(PuenteError):
    """The audit topic has no partitions on the broker (it could not be created)."""

    retriable = True


def rotate_if_needed(
    ledger: Ledger, key: Ed25519PrivateKey, settings: AuditSettings
) -> Rotation | None:
    """Record a rotation to ``key`` signed by the previous key, when the key changed.

    The previous key is the one that signed the newest checkpoint; it must be
    configured (``PUENTE_AUDIT_PREVIOUS_SIGNING_KEY_FILE``) to vouch for the new one.
    """
    points = ledger.checkpoints()
    current = key_id(raw_public(key))
    if not points or points[-1].key_id == current:
        return None
    if any(r.next_key_id == current for r in ledger.rotations()):
        return None
    path = settings.previous_signing_key_file
    previous = parse_private_key(read_key_file(path)) if path is not None else None
    if previous is None or key_id(raw_public(previous)) != points[-1].key_id:
        log.warning(
            "the signing key changed (from %s to %s) without the previous key to vouch "
            "for it: verifiers pinned to the previous key will refuse new checkpoints; "
            "set PUENTE_AUDIT_PREVIOUS_SIGNING_KEY_FILE",
            points[-1].key_id, current,
        )  # fmt: skip
        return None
    rotation = sign_rotation(
        previous, raw_public(key), ledger.ledger_id, ledger.head().seq, datetime.now(UTC)
    )
    ledger.add_rotation(rotation)
    if settings.witness_file is not None:
        witness.append(settings.witness_file, witness.rotation_line(rotation))
    log.info("signing key rotated from %s to %s", rotation.key_id, current)
    return rotation


def _check_witness(settings: AuditSettings) -> None:
    """Warn when the witness cannot do its job: absent, or beside the ledger."""
    path = settings.witness_file
    if path is None:
        log.warning(
            "no witness file (PUENTE_AUDIT_WITNESS_FILE): a ledger cut back past its "
            "last published checkpoint cannot be detected"
        )
        return
    state = settings.hub.state_dir.resolve()
    if path.resolve().is_relative_to(state) or path.resolve().is_relative_to(
        settings.ledger_file.resolve().parent
    ):
        log.warning(
            "the witness file %s lies beside the ledger: whoever can cut the ledger "
            "can cut the witness too; keep it on another volume or host",
            path,
        )


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
        self.loop = BatchLoop(
            "audit",
            settings.kafka,
            self,
            registry,
            client_id=CLIENT_ID,
            metrics=LoopMetrics(lag=self.metrics.lag, failures=self.metrics.failures),
        )
        config = ApiConfig(
            settings.ledger_file,
            settings.credentials_file,
            pinned_keys(settings),
            settings.witness_file,
        )
        app = audit_app(config, registry, self.health)
        self.ops = OpsServer(app, settings.port, settings.host)
        self.ledger: Ledger | None = None
        self.producer: AIOKafkaProducer | None = None
        self.checkpointer: Checkpointer | None = None
        self.cursor: Cursor | None = None
        self.ingestor: Ingestor | None = None
        self._task: asyncio.Task[None] | None = None  # time-based checkpoints
        # One ledger writer: batches, checkpoints and closing take turns.
        self._ledger_turn = asyncio.Lock()
        self._producing = False
        self._running = False
        self._closing = False
        self._head_seq = 0  # the ledger's head as of the last finished batch
        self._stored_seq = 0  # the ledger's head as of the last stored batch

    def health(self) -> dict[str, Any]:
        """Readiness for /health: running, and the ledger's progress."""
        ticking = self._task is not None and not self._task.done()
        ok = self._running and ticking and self.loop.failures == 0
        last = self.checkpointer.last_seq if self.checkpointer else 0
        return {"ok": ok, "entries": self._head_seq, "last_checkpoint_seq": last}

    async def start(self) -> None:
        """Create topics, open the ledger, subscribe at its positions, start ingesting."""
        try:
            await self._start()
        except BaseException:
            # Release the ledger lock and the port so a retry (or the next run) can start.
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        self._closing = False
        await runtime_topics.create(
            s.kafka,
            {s.topic: s.topics.audit_partitions, s.checkpoint_topic: 1},
            configs={s.checkpoint_topic: CHECKPOINT_TOPIC_CONFIG},
        )
        _check_witness(s)
        self.ledger = await asyncio.to_thread(Ledger.open_writer, s.ledger_file)
        self._head_seq = self._stored_seq = self.ledger.head().seq
        self.metrics.entries.set(self._head_seq)
        await asyncio.to_thread(rotate_if_needed, self.ledger, self.key, s)
        self.checkpointer = Checkpointer(
            self.ledger,
            self.key,
            self.schedule,
            self.checkpoint_entry,
            self.metrics,
            witness=s.witness_file,
        )
        self.cursor = Cursor(self.ledger.positions())
        self.ingestor = Ingestor(self.ledger, self.catalog, self.metrics)
        await self.ops.start()
        self.producer = AIOKafkaProducer(**producer_config(s.kafka, CLIENT_ID))
        await self.producer.start()
        self._producing = True
        await self._publish_checkpoints()
        partitions = await self._partitions(self.producer)
        await self.loop.start(
            Subscription(
                partitions=tuple((s.topic, n) for n in partitions),
                group_id=s.group_id,
                max_records=s.max_batch,
                # Only entries of committed router transactions (exactly-once routing).
                isolation_level="read_committed",
            )
        )
        self._running = True
        self._task = asyncio.create_task(
            self._tick(self.checkpointer), name="audit-checkpoints"
        )
        self._task.add_done_callback(_report_failure)
        log.info("audit ledger at seq %d, consuming %s", self._head_seq, s.topic)

    async def _partitions(self, producer: AIOKafkaProducer) -> list[int]:
        """Every partition the audit topic has on the broker.

        The broker's count, not the configured one: a topic that existed before
        with more partitions must not have some of them left unread.
        """
        try:
            numbers = sorted(await producer.partitions_for(self.settings.topic))
        except KafkaError as e:
            raise AuditTopicMissingError(
                f"topic {self.settings.topic} has no partitions: {e}"
            ) from e
        if not numbers:
            raise AuditTopicMissingError(f"topic {self.settings.topic} has no partitions")
        return numbers

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        """The batch loop's work: what the ledger lacks of ``records`` into it.

        The offsets returned (committed by the loop) only report lag: the ledger's
        positions, stored with the entries, are the truth.
        """
        async with self._ledger_turn:
            cursor, ingestor = self.cursor, self.ingestor
            if self._closing or cursor is None or ingestor is None:
                return {}  # never stored, never committed: read again on the next start
            await self._ingest(cursor, ingestor, records, consumer)
            seen = {(r.topic, r.partition) for r in records}
            positions = cursor.positions
            return {TopicPartition(*w): positions[w] for w in seen if w in positions}

    async def _ingest(
        self, cursor: Cursor, ingestor: Ingestor, records: Sequence[Any], consumer: Any
    ) -> None:
        fresh = await cursor.admit(records, consumer)
        if fresh:
            result = await ingestor.ingest(fresh)
            self._stored_seq = result.head.seq
            cursor.advance(fresh)
            if result.appended and self.checkpointer is not None:
                await asyncio.to_thread(self.checkpointer.witness_head, result.head)

    async def after_commit(self) -> None:
        """The batch counts from now on; a checkpoint once enough entries came in."""
        async with self._ledger_turn:
            # Only now, after the lag report's commit, may the timer checkpoint it.
            self._head_seq = self._stored_seq
            if not self._closing:
                await self._checkpoint_if_due()

    async def rewind(
        self, records: Sequence[Any], consumer: Consumer, error: BaseException
    ) -> None:
        """Seek the failed batch's partitions back to what the ledger really holds."""
        del error  # reported by the loop
        async with self._ledger_turn:
            cursor, ledger = self.cursor, self.ledger
            if cursor is not None and ledger is not None:
                await self._seek_to_ledger(cursor, ledger, records, consumer)

    async def _seek_to_ledger(
        self, cursor: Cursor, ledger: Ledger, records: Sequence[Any], consumer: Consumer
    ) -> None:
        try:
            stored: dict[Position, int] | None = ledger.positions()
        except LedgerError:
            stored = None  # the cursor advances only after a stored batch: still right
        # Should a seek fail, the cursor still sees the partition ahead of the ledger
        # on its next records and seeks it back then.
        partitions = {(r.topic, r.partition) for r in records}
        await cursor.rewind(consumer, partitions, stored)

    async def _tick(self, checkpointer: Checkpointer) -> None:
        """Take time-based checkpoints while no batch comes to do it."""
        # Ends when halted rather than being cancelled: a checkpoint being signed in
        # a thread must be stored before the ledger is closed.
        while not await self.loop.halted_within(_TICK_SECONDS):
            if not checkpointer.due(self._head_seq):
                continue
            async with self._ledger_turn:
                if self._closing:
                    return
                await self._checkpoint_if_due()

    async def _checkpoint_if_due(self) -> None:
        if self.checkpointer is not None and self.checkpointer.due(self._head_seq):
            await asyncio.to_thread(self.checkpointer.take)
            await self._publish_checkpoints()

    async def _publish_checkpoints(self) -> None:
        if self.checkpointer is None or self.producer is None:
            return
        try:
            await self.checkpointer.publish_pending(
                self.producer, self.settings.checkpoint_topic
            )
        except KafkaError as e:
            # Stored already; publishing is retried after the next checkpoint.
            log.warning("could not publish audit checkpoints yet: %s", e)

    async def stop(self) -> None:
        """Finish the batch in hand, sign a last checkpoint, then close everything."""
        self._running = False
        self._closing = True  # a batch not yet begun is left for the next start
        # Waits up to the graceful timeout for the batch in hand, then cancels it.
        await self.loop.stop()
        if self._task is not None:
            # Halted, it ends after a checkpoint in hand; its failure was logged.
            await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT)
            self._task.cancel()
        writing = not await self._ledger_idle()
        if writing:
            log.error(
                "a ledger write did not end within %.0f s; no final checkpoint",
                _STOP_TIMEOUT,
            )
        else:
            await self._last_checkpoint()
        if self.producer is not None:
            await self.producer.stop()
        await self.ops.stop()
        if self.ledger is not None and not writing:
            self.ledger.close()
        self.producer = self.ledger = self.checkpointer = None
        self.cursor = self.ingestor = None
        self._producing = False

    async def _ledger_idle(self) -> bool:
        """Wait for a batch or checkpoint still in hand; False if it does not end."""
        try:
            await asyncio.wait_for(self._ledger_turn.acquire(), _STOP_TIMEOUT)
        except TimeoutError:
            return False
        self._ledger_turn.release()
        return True

    async def _last_checkpoint(self) -> None:
        if self.checkpointer is None:
            return
        try:
            taken = self.checkpointer.take()
        except PuenteError as e:
            log.warning("no final checkpoint: %s", e)
            return
        if taken is not None and self._producing:
            await self._publish_checkpoints()

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set; raise if ingestion fails first."""
        await self.start()
        task = self._task
        waiters = [asyncio.create_task(e.wait()) for e in (stop, self.loop.failed)]
        try:
            watched: set[asyncio.Future[Any]] = {*waiters}
            if task is not None:
                watched.add(task)
            await asyncio.wait(watched, return_when=asyncio.FIRST_COMPLETED)
            if self.loop.error is not None:
                raise self.loop.error
            if task is not None and task.done() and not task.cancelled():
                task.result()  # re-raises a checkpointing failure
        finally:
            for waiter in waiters:
                waiter.cancel()
            await self.stop()


def _report_failure(task: asyncio.Task[None]) -> None:
    if not task.cancelled() and (error := task.exception()) is not None:
        log.error("audit checkpointing stopped: %s: %s", type(error).__name__, error)


def build_service(settings: AuditSettings, registry: CollectorRegistry) -> AuditService:
    """The audit service for ``settings`` with metrics on ``registry``."""
    return AuditService(settings, registry)
