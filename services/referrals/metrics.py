"""The tracker's metrics: computed from its database at each scrape.

Open and overdue referrals, times to acknowledge and to service, and notices are
read from the database rather than counted as events arrive, so a restart or a
rebuild neither loses nor double-counts them. Labels carry institution ids and
symbols only; children are counted, never named.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable, Iterable, Iterator, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client import Counter as CounterMetric
from prometheus_client.core import (
    CounterMetricFamily,
    GaugeMetricFamily,
    HistogramMetricFamily,
    Metric,
)
from prometheus_client.registry import Collector

from services.contracts import lifecycle
from services.referrals.deadlines import ACKNOWLEDGE, SERVICE, URGENCIES, Clock
from services.referrals.errors import TrackerStoreError
from services.referrals.store import Store, Tracked

# Age of an open referral since its receiving institution got it.
AGE_BUCKETS: Final = (
    (timedelta(hours=24), "0-24h"),
    (timedelta(hours=72), "1-3d"),
    (timedelta(days=7), "3-7d"),
    (timedelta(days=30), "7-30d"),
)
OLDEST: Final = "30d+"
REASONS: Final = frozenset(
    {lifecycle.PARTY_MISMATCH, lifecycle.TRANSITION_INVALID, lifecycle.UNKNOWN_REFERRAL}
)
# Seconds: 1 h, 4 h, 12 h, 24 h, 48 h, 72 h, 7 d, 14 d, 30 d.
DURATION_BUCKETS: Final = (
    3600,
    14400,
    43200,
    86400,
    172800,
    259200,
    604800,
    1209600,
    2592000,
)


def age_bucket(age: timedelta) -> str:
    """The age bucket label of ``age``."""
    for limit, label in AGE_BUCKETS:
        if age < limit:
            return label
    return OLDEST


# The notices a deadline check can issue: to the referrer or the supervisor, for the
# acknowledge or service deadline, at the first or second escalation.
_NOTICE_LABELS: Final = frozenset(
    (role, stage, level)
    for role in ("referring", "supervisor")
    for stage in ("acknowledge", "service")
    for level in ("1", "2")
)


class ProcessMetrics:
    """What only the running process knows: duplicates read, failed batches."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.duplicates = CounterMetric(
            "puente_referrals_duplicates",
            "Referral events read again (redeliveries), applied once.",
            registry=registry,
        )
        self.failures = CounterMetric(
            "puente_referrals_batch_failures",
            "Batches the tracker could not store; they are read again.",
            registry=registry,
        )
        self.checks = CounterMetric(
            "puente_referrals_deadline_checks",
            "Deadline checks run.",
            registry=registry,
        )
        self.notices_sent = CounterMetric(
            "puente_referrals_notices_sent",
            "referral_overdue notices the broker acknowledged (from the outbox).",
            registry=registry,
        )


class TrackerCollector(Collector):
    """Reads the tracker database at each scrape."""

    def __init__(self, path: Path, clock: Clock) -> None:
        self.path = path
        self.clock = clock

    def collect(self) -> Iterator[Metric]:
        """The metric families of the database's current state."""
        if not self.path.exists():
            return
        try:
            store = Store.open(self.path, readonly=True)
        except TrackerStoreError:
            return
        try:
            tracked, refusals = store.all(), store.refusals()
            waiting = len(store.waiting())
            outbox = store.outbox()
            notices = Counter((n.role, n.stage, str(n.level)) for n in store.notices())
        finally:
            store.close()
        now = self.clock()
        yield _open(tracked, now)
        yield _overdue(tracked)
        yield _overdue_cases(tracked)
        yield _durations(
            "puente_referrals_time_to_acknowledge_seconds",
            "Time from receipt to acceptance or rejection, by urgency.",
            tracked,
            lambda t: t.referral.acknowledged_at,
        )
        yield _durations(
            "puente_referrals_time_to_service_seconds",
            "Time from receipt to the start of service, by urgency.",
            tracked,
            lambda t: t.referral.service_started_at,
        )
        counter = CounterMetricFamily(
            "puente_referrals_notices",
            "referral_overdue notices issued, by recipient role, stage and level.",
            labels=("role", "stage", "level"),
        )
        # Every role, stage and level, zeros included: a dashboard shows none issued.
        for labels in sorted(_NOTICE_LABELS | notices.keys()):
            counter.add_metric(labels, notices.get(labels, 0))
        yield counter
        refused = CounterMetricFamily(
            "puente_referrals_transitions_refused",
            "Lifecycle events the tracker refused, by reason.",
            labels=("reason",),
        )
        # Every reason, zeros included: a dashboard shows that none were refused.
        for reason in sorted(REASONS | refusals.keys()):
            refused.add_metric((reason,), refusals.get(reason, 0))
        yield refused
        yield GaugeMetricFamily(
            "puente_referrals_waiting_events",
            "Lifecycle events read before the ones they follow, waiting for them.",
            value=waiting,
        )
        yield GaugeMetricFamily(
            "puente_referrals_outbox_unsent",
            "Events the tracker publishes as the hub (overdue notices, EXPIRED) not yet "
            "acknowledged by the broker.",
            value=outbox["waiting"],
        )


def _open(tracked: Iterable[Tracked], now: datetime) -> GaugeMetricFamily:
    counts = Counter(
        (t.referral.receiving, t.referral.urgency, age_bucket(now - t.referral.sent_at))
        for t in tracked
        if t.referral.open
    )
    gauge = GaugeMetricFamily(
        "puente_referrals_open",
        "Open referrals by receiving institution, urgency and age.",
        labels=("receiving_institution", "urgency", "age_bucket"),
    )
    for labels, count in sorted(counts.items()):
        gauge.add_metric(labels, count)
    return gauge


def _overdue(tracked: Iterable[Tracked]) -> GaugeMetricFamily:
    counts = Counter(
        (
            t.referral.receiving,
            t.referral.urgency,
            t.overdue.stage,
            str(t.overdue.level),
            "true" if t.referral.is_minor else "false",
        )
        for t in tracked
        if t.overdue is not None
    )
    gauge = GaugeMetricFamily(
        "puente_referrals_overdue",
        "Open referrals past a deadline, by receiving institution, urgency, stage "
        "(acknowledge, service), escalation level and whether the person is a child.",
        labels=("receiving_institution", "urgency", "stage", "level", "minor"),
    )
    for labels, count in sorted(counts.items()):
        gauge.add_metric(labels, count)
    return gauge


def _overdue_cases(tracked: Iterable[Tracked]) -> GaugeMetricFamily:
    """Overdue counts on a fixed label grid, zeros included, for alerts.

    Every combination is always exported, so an alert on it is evaluated (and a
    missing series never reads as "nothing overdue").
    """
    counts = Counter(
        (
            t.referral.urgency,
            t.overdue.stage,
            "true" if t.referral.is_minor else "false",
        )
        for t in tracked
        if t.overdue is not None
    )
    gauge = GaugeMetricFamily(
        "puente_referrals_overdue_cases",
        "Open referrals past a deadline, by urgency, stage and whether the person is "
        "a child (every combination, zeros included).",
        labels=("urgency", "stage", "minor"),
    )
    for urgency in URGENCIES:
        for stage in (ACKNOWLEDGE, SERVICE):
            for minor in ("true", "false"):
                gauge.add_metric((urgency, stage, minor), counts[urgency, stage, minor])
    return gauge


def _durations(
    name: str,
    documentation: str,
    tracked: Sequence[Tracked],
    end: Callable[[Tracked], datetime | None],
) -> HistogramMetricFamily:
    by_urgency: dict[str, list[float]] = {}
    for t in tracked:
        stop = end(t)
        if stop is not None:
            seconds = max((stop - t.referral.sent_at).total_seconds(), 0.0)
            by_urgency.setdefault(t.referral.urgency, []).append(seconds)
    family = HistogramMetricFamily(name, documentation, labels=("urgency",))
    # Every urgency, even with nothing answered yet: dashboards always find a series.
    for urgency in URGENCIES:
        values = by_urgency.get(urgency, [])
        buckets = [
            (str(float(limit)), float(sum(1 for v in values if v <= limit)))
            for limit in DURATION_BUCKETS
        ]
        buckets.append(("+Inf", float(len(values))))
        family.add_metric((urgency,), buckets, sum(values))
    return family
