"""Build the router from its settings: the shared batch loop + producer + ops."""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any, Final

from aiokafka import AIOKafkaProducer, ConsumerRebalanceListener, TopicPartition
from aiokafka.errors import TransactionalIdAuthorizationFailed
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.contracts.topics import parse as parse_topic
from services.policy import load_policy
from services.router.committer import Committer
from services.router.dedupe import DedupeStore
from services.router.held import RejectionTopics
from services.router.metrics import RouterMetrics
from services.router.pipeline import Limits, Pipeline
from services.router.routing import BatchRouter
from services.router.settings import RouterSettings
from services.runtime import topic_admin as runtime_topics
from services.runtime.consume import BatchLoop, LoopMetrics, Subscription
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.kafka import asking_for_producer_id, producer_config
from services.runtime.ops import OpsServer, ops_app
from services.runtime.service import tune_gc

log = logging.getLogger(__name__)
# How long a rebalance waits for outputs in the air before giving partitions up.
REVOKE_SETTLE_SECONDS = 5.0
# The producer puts one batch per partition into each request, and every decision
# of a batch of records lands in the one hub.audit partition: batches this large
# take a whole batch's audit entries in one request (256 KiB needed three, one
# after another). Below Apache Kafka's default message.max.bytes (1,048,588).
ROUTER_BATCH_BYTES = 1_000_000
# The router builds whole record batches itself (send_batch), so lingering only
# delays them; the broker's cost is per record batch, so a batch may take every
# output a partition gets from one send.
PRODUCER_TUNING: Final[dict[str, Any]] = {
    "linger_ms": 0,
    "max_batch_size": ROUTER_BATCH_BYTES,
}


# The topics the router writes to.
_OUTPUT_KINDS: Final = frozenset({"out", "rejected", "audit"})


class TransactionsUnavailableError(PuenteError):
    """PUENTE_ROUTER_TRANSACTIONS=on, and the broker grants no transactional id."""


class RouterService:
    """The router process: consume hub.in.* in batches, route, commit after acks."""

    def __init__(self, settings: RouterSettings, registry: CollectorRegistry) -> None:
        self.settings = settings
        self.catalog = Catalog.load(settings.hub.schemas_dir)
        self.policy = load_policy(settings.hub.policy_dir, self.catalog)
        keys = subject_keys(HubKeySettings(hub=settings.hub))
        self.metrics = RouterMetrics(registry)
        self.store = DedupeStore(settings.dedupe_file)
        self.producer = self._plain_producer()
        limits = Limits(
            settings.max_event_bytes, timedelta(seconds=settings.future_skew_seconds)
        )
        pipeline = Pipeline(self.catalog, self.policy, keys, limits)
        pipeline.warm(self.policy.schemas())
        self.router = BatchRouter(
            pipeline=pipeline,
            store=self.store,
            producer=self.producer,
            metrics=self.metrics,
            institutions=frozenset(self.policy.institutions),
            group=settings.group_id,
            rejection_topics=RejectionTopics(self._create_rejection_topic),
            renew=self._started_plain_producer,
        )
        self.loop = BatchLoop(
            "router",
            settings.kafka,
            self.router,
            registry,
            client_id="puente-router",
            metrics=LoopMetrics(lag=self.metrics.lag.labels(settings.group_id)),
        )
        self.subscription = Subscription(
            pattern=settings.inbound_pattern,
            group_id=settings.group_id,
            max_records=settings.max_batch,
            # As before transactions: hub.in.* is written by ministries, never in them.
            isolation_level="read_uncommitted",
            listener=_Rebalance(self.router.committer),
            tuning={"fetch_max_wait_ms": settings.fetch_max_wait_ms},
        )
        self.ops = OpsServer(
            ops_app("router", registry, self.health), settings.port, settings.host
        )
        self._running = False

    async def _start_producer(self) -> None:
        """Start producing: in transactions when the setting and the broker allow.

        With ``auto`` the broker is asked for a producer id for this router's
        transactional id (which also aborts what a killed predecessor with the same
        id left open); a broker without transactions keeps the plain producer.
        """
        mode = self.settings.transactions
        if mode == "off":
            log.info("routing at-least-once: transactions are off")
            await self.producer.start()
            return
        tid = self.settings.transactional_id
        try:
            producer = await self._transactional_producer()
        except Exception as e:  # any refusal means: no transactions here
            if mode == "on":
                raise TransactionsUnavailableError(
                    f"the broker refused transactional id {tid!r} "
                    f"({type(e).__name__}); PUENTE_ROUTER_TRANSACTIONS=on needs "
                    "Apache Kafka and a WRITE grant on that transactional id"
                ) from e
            # A refused grant is a set-up error worth a warning; an embedded broker
            # without transactions is expected.
            if isinstance(e, TransactionalIdAuthorizationFailed):
                log.warning(
                    "the broker refused transactional id %s (no WRITE grant on it); "
                    "exactly-once off, at-least-once with event-id de-duplication",
                    tid,
                )
            else:
                log.info(
                    "transactions not available on this broker; exactly-once off, "
                    "at-least-once with event-id de-duplication (%s)",
                    type(e).__name__,
                )
            await self.producer.start()
            return
        await self.producer.stop()  # never started; the transactional one replaces it
        self.producer = producer
        self.router.use_transactions(
            producer,
            renew=self._transactional_producer,
            stuck_after=self.settings.kafka.request_timeout_ms / 1000,
        )
        log.info("routing exactly-once in Kafka transactions as %s", tid)

    def _plain_producer(self) -> AIOKafkaProducer:
        """A producer without transactions (idempotent where the broker grants it)."""
        return AIOKafkaProducer(
            **producer_config(self.settings.kafka, "puente-router", **PRODUCER_TUNING)
        )

    async def _started_plain_producer(self) -> AIOKafkaProducer:
        """A started `_plain_producer`: one stuck on a deleted topic is replaced."""
        producer = self._plain_producer()
        try:
            await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _transactional_producer(self) -> AIOKafkaProducer:
        """A started producer with this router's transactional id.

        Starting it fences any earlier producer with the id and aborts the
        transaction that one left open.
        """
        producer = AIOKafkaProducer(
            **producer_config(
                self.settings.kafka,
                "puente-router",
                transactional_id=self.settings.transactional_id,
                **PRODUCER_TUNING,
            )
        )
        try:
            # A broker without transactions refuses the producer id: that is its
            # answer, which aiokafka would log as an error.
            with asking_for_producer_id():
                await producer.start()
        except BaseException:
            await producer.stop()
            raise
        return producer

    async def _create_rejection_topic(self, name: str) -> bool:
        """Create rejection topic ``name`` as the router, unless it exists.

        Raises where the broker refuses: production grants the router no CREATE, and
        the partition waiting for it is held until an admin creates it.
        """
        topics = self.settings.topics
        return await runtime_topics.create_topic(
            self.settings.kafka,
            name,
            topics.rejected_partitions,
            topics.replication_factor,
        )

    def assigned(self) -> int:
        """How many inbound partitions this router holds right now."""
        return self.loop.assigned()

    def health(self) -> dict[str, Any]:
        """Readiness for /health."""
        return {
            "ok": self._running,
            "policy_version": self.policy.version,
            "partitions": self.assigned(),
            "transactions": self.router.transactional,
        }

    async def start(self) -> None:
        """Create missing topics, then start producing, consuming and serving /health."""
        wanted = runtime_topics.plan(
            self.settings.topics, self.policy.publish_rights, self.policy.receive_rights
        )
        await runtime_topics.create(self.settings.kafka, wanted)
        tune_gc()
        await self.ops.start()
        await self._start_producer()
        outputs = [t for t in wanted if parse_topic(t).kind in _OUTPUT_KINDS]
        await self.router.warm(outputs)
        self.router.start()
        await self.loop.start(self.subscription)
        self._running = True
        log.info("router started (policy %s)", self.policy.version)

    async def stop(self) -> None:
        """Stop routing, commit what is in the air, stop consuming, flush the producer."""
        self._running = False
        await self.router.close()
        await self.loop.stop()
        # The router's producer: a stuck transaction's replacement, if there was one.
        await self.router.producer.stop()
        await self.ops.stop()
        self.store.close()


class _Rebalance(ConsumerRebalanceListener):  # type: ignore[misc]
    """Commit the flights in the air before partitions move; forget moved ones."""

    def __init__(self, committer: Committer) -> None:
        self.committer = committer

    async def on_partitions_revoked(self, revoked: set[TopicPartition]) -> None:
        # Bounded: a stuck broker must not hold the group's rebalance.
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(REVOKE_SETTLE_SECONDS):
                await self.committer.drain()
        self.committer.forget(revoked)

    async def on_partitions_assigned(self, assigned: set[TopicPartition]) -> None:
        # Positions now come from the group's committed offsets.
        self.committer.forget(assigned)


def build_service(settings: RouterSettings, registry: CollectorRegistry) -> RouterService:
    """The router service for ``settings`` with metrics on ``registry``."""
    return RouterService(settings, registry)
