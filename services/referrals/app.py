"""Build the referral tracker: the hub's shared batch loop over its delivery topic.

The tracker is a recipient like any institution: the access policy delivers it the
lifecycle fields of every referral on ``hub.out.hub_referrals.referral``. Each
batch is applied to the SQLite state in one transaction, and only then does the
loop (`services.runtime.consume`) commit the batch's offsets: a crash between the
two reads the batch again, and the event ids already in the history make that a
no-op. A batch that cannot be stored is sought back and read again. Deadlines are checked
on a timer, with a clock the caller may replace; each new escalation is a
``referral_overdue`` event the tracker publishes as the hub (``hub_referrals``) from
its database's outbox, for the router to deliver under the policy.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Sequence
from datetime import datetime
from typing import Any, Final

from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.contracts.catalog import Catalog
from services.policy import Policy, load_policy
from services.referrals.api import referral_views
from services.referrals.deadlines import (
    CheckResult,
    Clock,
    DeadlineChecker,
    Deadlines,
    utc_now,
)
from services.referrals.errors import TrackerStoreError
from services.referrals.handlers import read_batch
from services.referrals.machine import Referral
from services.referrals.metrics import ProcessMetrics, TrackerCollector
from services.referrals.outbound import (
    OVERDUE,
    OverdueNotice,
    Sender,
    prepare_expired,
    prepare_overdue,
)
from services.referrals.settings import ReferralsSettings
from services.referrals.store import BatchResult, Store
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.consume import (
    Backoff,
    BatchLoop,
    Consumer,
    LoopMetrics,
    Offsets,
    SeekBack,
    Subscription,
    next_offsets,
)
from services.runtime.ops import OpsServer, ops_app

log = logging.getLogger(__name__)
CLIENT_ID: Final = "puente-referrals"
_STOP_TIMEOUT: Final = 30.0
_RETRY_SECONDS: Final = 1.0
_MAX_RETRY_SECONDS: Final = 30.0
_SEND_BATCH: Final = 500  # outbox events sent at once


def tracker_policy(settings: ReferralsSettings) -> tuple[Catalog, Policy]:
    """The policy, and the catalog with its projections (the deliveries decode)."""
    catalog = Catalog.load(settings.hub.schemas_dir)
    return catalog, load_policy(settings.hub.policy_dir, catalog)


def tracker_catalog(settings: ReferralsSettings) -> Catalog:
    """The catalog with the policy's projections, so the tracker's deliveries decode."""
    return tracker_policy(settings)[0]


class ReferralsService(SeekBack):
    """The tracker process: consume, apply, check deadlines, serve health and metrics."""

    def __init__(
        self,
        settings: ReferralsSettings,
        registry: CollectorRegistry,
        clock: Clock = utc_now,
    ) -> None:
        self.settings = settings
        self.clock = clock
        self.catalog, policy = tracker_policy(settings)
        self.deadlines = Deadlines.load(settings.deadlines_file)
        self.metrics = ProcessMetrics(registry)
        registry.register(TrackerCollector(settings.db_file, clock))
        self.loop = BatchLoop(
            "referrals",
            settings.kafka,
            self,
            registry,
            client_id=CLIENT_ID,
            metrics=LoopMetrics(failures=self.metrics.failures),
            backoff=Backoff(_RETRY_SECONDS, _MAX_RETRY_SECONDS),
            stop_seconds=_STOP_TIMEOUT,
        )
        ops = ops_app("referrals", registry, self.health)
        no_stream = [i.id for i in policy.institutions.values() if not i.stream]
        referral_views(ops, settings.db_file, no_stream)
        self.ops = OpsServer(ops, settings.port, settings.host)
        self.store: Store | None = None
        self.checker: DeadlineChecker | None = None
        self.sender = Sender(settings.kafka, CLIENT_ID)
        self._turn = asyncio.Lock()  # one database writer: batches and checks
        self._halt = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._running = False
        self.applied = 0

    def health(self) -> dict[str, Any]:
        """Readiness for /health."""
        ticking = self._task is not None and not self._task.done()
        ok = self._running and ticking and self.loop.failures == 0
        return {"ok": ok, "applied": self.applied, "topic": self.settings.topic}

    async def start(self) -> None:
        """Create the topic, open the database, subscribe, start the deadline timer."""
        try:
            await self._start()
        except BaseException:
            await self.stop()
            raise

    async def _start(self) -> None:
        s = self.settings
        self._halt.clear()
        await runtime_topics.create(
            s.kafka,
            {
                s.topic: s.topics.outbound_partitions,
                self.notice_topic: s.topics.inbound_partitions,
                topics.inbound(s.recipient, "referral"): s.topics.inbound_partitions,
            },
        )
        self.store = await asyncio.to_thread(Store.open, s.db_file)
        self.checker = DeadlineChecker(
            self.store, self.deadlines, self.clock, self._announce, self._expire
        )
        await self.ops.start()
        await self.sender.start()
        await self.loop.start(
            Subscription(
                topics=(s.topic,),
                group_id=s.group_id,
                max_records=s.max_batch,
                # Only deliveries of committed router transactions.
                isolation_level="read_committed",
            )
        )
        self._running = True
        self._task = asyncio.create_task(self._tick(), name="referrals-deadlines")
        log.info("referral tracker consuming %s into %s", s.topic, s.db_file)

    async def process(self, records: Sequence[Any], consumer: Consumer) -> Offsets:
        """One fetched batch into the database; the offsets the loop commits after."""
        del consumer
        async with self._turn:
            if self.store is None or self._halt.is_set():
                return {}  # neither stored nor committed: read again on the next start
            result = await self.apply(records)
        if result.refused:
            log.info("%d referral events refused", len(result.refused))
        return next_offsets(records)

    async def apply(self, records: Sequence[Any]) -> BatchResult:
        """Decode ``records``, apply them in one transaction (caller holds the turn)."""
        if self.store is None:
            raise TrackerStoreError("the tracker database is not open (not started)")
        decoded = read_batch(self.catalog, records)
        result = await asyncio.to_thread(self.store.apply, decoded.transitions)
        self.applied += result.applied
        self.metrics.duplicates.inc(result.duplicates)
        return result

    @property
    def notice_topic(self) -> str:
        """Where the tracker publishes its overdue notices (its own inbound topic)."""
        return topics.inbound(self.settings.recipient, OVERDUE)

    def _announce(
        self, notices: Sequence[OverdueNotice], now: datetime
    ) -> list[pubsub.Prepared]:
        # The envelope's times are the machine's: the router refuses events from the
        # future, and the deadline clock (``now``) may be set ahead in tests and trials.
        del now
        return prepare_overdue(self.catalog, notices, self.settings.recipient, utc_now())

    def _expire(
        self, referrals: Sequence[Referral], now: datetime
    ) -> list[pubsub.Prepared]:
        del now  # the machine's time, as for notices
        return prepare_expired(
            self.catalog, referrals, self.settings.recipient, utc_now()
        )

    async def publish_notices(self) -> int:
        """Send the outbox's unsent events; how many the broker acknowledged."""
        total = 0
        while True:
            sent, complete = await self._publish_some()
            total += sent
            # A batch the broker took whole may have others behind it.
            if not complete or self._halt.is_set():
                return total

    async def _publish_some(self) -> tuple[int, bool]:
        async with self._turn:
            if self.store is None:
                return 0, False
            events = await asyncio.to_thread(self.store.unsent, _SEND_BATCH)
        if not events:
            return 0, False
        try:
            acked = await self.sender.send(events)
        except KafkaError as e:
            log.warning("hub events not sent (sent again later): %s", e)
            return 0, False
        async with self._turn:
            if self.store is not None and acked:
                await asyncio.to_thread(self.store.sent, acked, self.clock())
        self.metrics.notices_sent.inc(len(acked))
        return len(acked), len(acked) == _SEND_BATCH

    async def check_deadlines(self) -> CheckResult | None:
        """Check every open referral's deadlines now (by the service's clock)."""
        async with self._turn:
            if self.checker is None:
                return None
            result = await asyncio.to_thread(self.checker.check)
        self.metrics.checks.inc()
        # Information, not warnings: the metrics and alerts carry the overdue state,
        # and a busy demo issues a notice every few seconds.
        for referral_id in result.expired:
            log.info("referral %s expired: EXPIRED published", referral_id)
        for notice in result.issued:
            log.info(
                "referral %s overdue (%s, level %d): notice to %s (%s)",
                notice.referral_id, notice.stage, notice.level,
                notice.recipient, notice.role,
            )  # fmt: skip
        return result

    async def _tick(self) -> None:
        # At once, then periodically: a restart does not delay an overdue notice.
        while True:
            try:
                await self.check_deadlines()
                await self.publish_notices()
            except Exception as e:  # noqa: BLE001 - the next tick tries again
                log.error(  # noqa: TRY400 - the reason is enough; it is retried
                    "deadline check failed: %s: %s", type(e).__name__, e
                )
            if await self._halted_within(self.settings.check_seconds):
                return

    async def _halted_within(self, seconds: float) -> bool:
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._halt.wait(), seconds)
        return self._halt.is_set()

    async def stop(self) -> None:
        """Finish the batch in hand, then close everything."""
        self._halt.set()
        await self.loop.stop()
        self._running = False
        if self._task is not None:
            await asyncio.wait({self._task}, timeout=_STOP_TIMEOUT)
            self._task.cancel()
        async with self._turn:
            if self.store is not None:
                self.store.close()
        await self.sender.stop()
        await self.ops.stop()
        self.store = self.checker = None
        self._task = None

    async def run_until(self, stop: asyncio.Event) -> None:
        """Run until ``stop`` is set."""
        await self.start()
        try:
            await stop.wait()
        finally:
            await self.stop()


def build_service(
    settings: ReferralsSettings, registry: CollectorRegistry
) -> ReferralsService:
    """The referral tracker for ``settings`` with metrics on ``registry``."""
    return ReferralsService(settings, registry)
