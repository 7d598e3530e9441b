"""The indicators' metrics: process counters, and each indicator's current total.

The totals are read from the database (at most every ``gauge_seconds``) and pass
the same disclosure control as any published table (the current period's total,
as published): a suppressed total is left out of the scrape rather than shown.
Labels are the indicator id, its working group and its period: a dozen-odd
series, no ids of people or events.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Gauge
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector

from services.indicators.catalogue import Catalogue
from services.indicators.counting import LOCAL, period_bounds
from services.indicators.errors import StoreError
from services.indicators.store import Store
from services.indicators.tables import Cache, publish

log = logging.getLogger(__name__)


class ProcessMetrics:
    """What only the running process knows: events counted, duplicates, failures."""

    def __init__(self, registry: CollectorRegistry, group: str) -> None:
        self.counted = Counter(
            "puente_indicators_events",
            "Delivered events counted (each event id once).",
            registry=registry,
        )
        self.duplicates = Counter(
            "puente_indicators_duplicates",
            "Events read again (redeliveries), counted once.",
            registry=registry,
        )
        self.corrections = Counter(
            "puente_indicators_corrections",
            "Events that supersede an earlier one (its cells lose their one).",
            registry=registry,
        )
        self.unreadable = Counter(
            "puente_indicators_unreadable",
            "Delivered records that could not be decoded (skipped, logged).",
            registry=registry,
        )
        self.failures = Counter(
            "puente_indicators_batch_failures",
            "Batches that could not be stored; they are read again.",
            registry=registry,
        )
        self.lag = Gauge(
            "puente_indicators_consumer_lag",
            "Deliveries not yet counted, over the partitions held.",
            ["group"],
            registry=registry,
        ).labels(group)


class IndicatorCollector(Collector):
    """``puente_indicator_total``: each indicator's current-period total, published."""

    def __init__(
        self,
        catalogue: Catalogue,
        store: Callable[[], Store | None],
        today: Callable[[], date] | None = None,
        every_seconds: float = 0.0,
    ) -> None:
        self.catalogue = catalogue
        self.store = store
        self.today = today or local_today
        self.every_seconds = every_seconds
        self.cache: Cache = {}
        self._samples: list[tuple[list[str], int]] = []
        self._late: dict[str, int] = {}
        self._through: dict[str, float] = {}
        self._at: float | None = None

    def collect(self) -> Iterator[Metric]:
        """One gauge sample per indicator whose current total may be published."""
        family = GaugeMetricFamily(
            "puente_indicator_total",
            "Events of the current period counted by each indicator, after "
            "disclosure control (a suppressed total is not exported).",
            labels=["indicator", "working_group", "period"],
        )
        # Protecting a period's tables costs up to a second or so per indicator:
        # worked out at most every ``every_seconds``, whatever the scrape rate.
        now = time.monotonic()
        if self._at is None or now - self._at >= self.every_seconds:
            self._samples = self._totals()
            self._releases()
            self._at = now
        for labels, value in self._samples:
            family.add_metric(labels, value)
        yield family
        late = GaugeMetricFamily(
            "puente_indicator_late_events",
            "Changes to days already released (late events, corrections): in the "
            "live counts, not in any published table.",
            labels=["indicator"],
        )
        through = GaugeMetricFamily(
            "puente_indicator_released_through_seconds",
            "End of the last day each indicator's tables are released for (Unix time).",
            labels=["indicator"],
        )
        for ident in self.catalogue.indicators:
            late.add_metric([ident], self._late.get(ident, 0))
            # NaN until the first release: the series exists, no alert compares it.
            through.add_metric([ident], self._through.get(ident, math.nan))
        yield late
        yield through

    def _releases(self) -> None:
        store = self.store()
        if store is None:
            return
        try:
            self._late = store.late_events()
            marks = store.released_through()
        except StoreError as e:
            log.warning("indicator releases not read: %s", e)
            return
        self._through = {
            ident: datetime.combine(
                day + timedelta(days=1), datetime.min.time(), LOCAL
            ).timestamp()
            for ident, day in marks.items()
        }

    def _totals(self) -> list[tuple[list[str], int]]:
        store = self.store()
        if store is None:
            return []
        today = self.today()
        out: list[tuple[list[str], int]] = []
        for indicator in self.catalogue.indicators.values():
            try:
                # The current period, not released yet: from the live counts
                # (operators' gauges, never a reader's table), protected likewise.
                days = period_bounds(today, indicator.period)
                counts = store.counts(indicator.id, 0, live=True, days=days)
            except StoreError as e:
                log.warning("indicator totals not read: %s", e)
                return out
            table = publish(indicator, counts, today, today, (), cache=self.cache).tables[
                0
            ]
            total = table.cells[0].count if table.cells else 0
            if total is not None:
                labels = [indicator.id, indicator.working_group, indicator.period]
                out.append((labels, total))
        return out


def local_today() -> date:
    """Today in El Salvador (periods are local calendar periods)."""
    return datetime.now(LOCAL).date()
