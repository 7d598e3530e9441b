"""What the demo counts: inputs published, the router's series, and the verdict (pure).

The router's ``puente_*`` series are read in-process from its registry; the
driver's own counts say what was sent, so the two can be compared reason by reason.
"""

from __future__ import annotations

import math
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Final

from prometheus_client import CollectorRegistry
from prometheus_client.metrics_core import Metric

from services.contracts.lifecycle import HUB_SOURCE

# Sources that are the hub itself: its referral tracker publishes notices and expiries.
HUB_SOURCES: Final = frozenset({HUB_SOURCE})


@dataclass
class Published:
    """Inputs the broker acknowledged, by what they are."""

    good: Counter[tuple[str, str]] = field(default_factory=Counter)
    bad: Counter[str] = field(default_factory=Counter)
    by_source: Counter[str] = field(default_factory=Counter)

    def count(self, source: str, event_type: str, expected_reason: str | None) -> None:
        """Count one acknowledged input published on ``hub.in.<source>.<event_type>``."""
        self.by_source[source] += 1
        if expected_reason is None:
            self.good[(source, event_type)] += 1
        else:
            self.bad[expected_reason] += 1

    @property
    def total(self) -> int:
        """Every input published."""
        return sum(self.by_source.values())

    @property
    def good_total(self) -> int:
        """Inputs the router must accept."""
        return sum(self.good.values())


@dataclass(frozen=True)
class Snapshot:
    """The router's event-flow series at one moment."""

    accepted: Mapping[tuple[str, str], float] = field(default_factory=dict)
    rejected: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    duplicates: float = 0.0
    deliveries: Mapping[tuple[str, str, str], float] = field(default_factory=dict)
    # Cumulative count per upper bound, summed over event types.
    latency_buckets: Mapping[float, float] = field(default_factory=dict)
    lag: float = 0.0

    @property
    def accepted_total(self) -> int:
        """Inputs accepted for routing."""
        return round(sum(self.accepted.values()))

    @property
    def hub_own(self) -> int:
        """Events the hub published itself (the referral tracker's), accepted."""
        return round(sum(v for (s, _), v in self.accepted.items() if s in HUB_SOURCES))

    @property
    def rejected_total(self) -> int:
        """Inputs rejected, whatever the reason."""
        return round(sum(self.rejected.values()))

    @property
    def handled(self) -> int:
        """Inputs the router has finished with: accepted, rejected or duplicate."""
        return self.accepted_total + self.rejected_total + round(self.duplicates)

    @property
    def deliveries_total(self) -> int:
        """Records delivered to recipients."""
        return round(sum(self.deliveries.values()))

    def rejected_by_reason(self) -> Counter[str]:
        """Rejections per reason code."""
        out: Counter[str] = Counter()
        for (_, _, reason), value in self.rejected.items():
            out[reason] += round(value)
        return out

    def by_source(self) -> dict[str, tuple[int, int]]:
        """Accepted and rejected inputs per source."""
        accepted: Counter[str] = Counter()
        rejected: Counter[str] = Counter()
        for (source, _), value in self.accepted.items():
            accepted[source] += round(value)
        for (source, _, _), value in self.rejected.items():
            rejected[source] += round(value)
        return {s: (accepted[s], rejected[s]) for s in sorted(accepted | rejected)}

    def deliveries_by_view(self) -> dict[str, Counter[str]]:
        """Deliveries per recipient, then per view."""
        out: dict[str, Counter[str]] = {}
        for (recipient, _, view), value in self.deliveries.items():
            out.setdefault(recipient, Counter())[view] += round(value)
        return dict(sorted(out.items()))

    def latency(self, q: float) -> float | None:
        """The ``q`` quantile of delivery latency in seconds (None before any)."""
        return quantile(self.latency_buckets, q)


def snapshot(registry: CollectorRegistry) -> Snapshot:
    """Read the router's ``puente_*`` series from its registry."""
    return snapshot_of(registry.collect())


def snapshot_of(families: Iterable[Metric]) -> Snapshot:
    """A `Snapshot` from collected metric families (other families are ignored)."""
    accepted: defaultdict[tuple[str, str], float] = defaultdict(float)
    rejected: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    deliveries: defaultdict[tuple[str, str, str], float] = defaultdict(float)
    buckets: defaultdict[float, float] = defaultdict(float)
    duplicates = lag = 0.0
    for family in families:
        for sample in family.samples:
            labels, value = sample.labels, sample.value
            if sample.name == "puente_events_accepted_total":
                accepted[(labels["source"], labels["event_type"])] += value
            elif sample.name == "puente_events_rejected_total":
                key = (labels["source"], labels["event_type"], labels["reason"])
                rejected[key] += value
            elif sample.name == "puente_events_duplicate_total":
                duplicates += value
            elif sample.name == "puente_deliveries_total":
                key = (labels["recipient"], labels["event_type"], labels["view"])
                deliveries[key] += value
            elif sample.name == "puente_delivery_latency_seconds_bucket":
                buckets[float(labels["le"])] += value
            elif sample.name == "puente_consumer_lag":
                lag += value
    return Snapshot(
        dict(accepted), dict(rejected), duplicates, dict(deliveries), dict(buckets), lag
    )


def quantile(buckets: Mapping[float, float], q: float) -> float | None:
    """Prometheus' ``histogram_quantile`` over cumulative ``{upper bound: count}``.

    Linear interpolation inside the bucket that holds the rank; a rank in the
    ``+Inf`` bucket answers the highest finite bound, as Prometheus does.
    """
    bounds = sorted(buckets)
    if not bounds or not 0.0 <= q <= 1.0:
        return None
    total = buckets[bounds[-1]]
    if total <= 0:
        return None
    rank = q * total
    lower, below = 0.0, 0.0
    for bound in bounds:
        count = buckets[bound]
        if count >= rank:
            if math.isinf(bound):
                return lower
            if count == below:
                return bound
            return lower + (bound - lower) * (rank - below) / (count - below)
        lower, below = bound, count
    return lower


@dataclass(frozen=True)
class Verdict:
    """Whether the hub handled every input as the simulator expected."""

    problems: tuple[str, ...]
    bad_sent: int
    bad_matched: int

    @property
    def ok(self) -> bool:
        """No problem found."""
        return not self.problems


def check(published: Published, snap: Snapshot) -> Verdict:
    """Compare what was sent with what the router counted, reason by reason."""
    problems: list[str] = []
    rejected = snap.rejected_by_reason()
    matched = 0
    for reason in sorted(published.bad.keys() | rejected.keys()):
        sent, seen = published.bad[reason], rejected[reason]
        matched += min(sent, seen)
        if sent != seen:
            problems.append(
                f"{reason}: {sent} bad input(s) sent, {seen} rejected by the router"
            )
    # The hub's own events (overdue notices, expiries) are routed too; not sent here.
    accepted = snap.accepted_total - snap.hub_own
    if accepted != published.good_total:
        problems.append(
            f"{published.good_total} good input(s) sent, "
            f"{accepted} accepted by the router"
        )
    if snap.handled < published.total:
        problems.append(
            f"{published.total - snap.handled} input(s) not yet routed when the demo "
            "stopped"
        )
    return Verdict(tuple(problems), sum(published.bad.values()), matched)


@dataclass(frozen=True)
class ReferralCounts:
    """The referral tracker's picture: open, overdue, and transitions turned away."""

    open: int = 0
    overdue: int = 0
    notices: int = 0  # overdue notices issued (each level, each recipient)
    refused: int = 0  # forged or out-of-order transitions (router or tracker)


def referral_counts(registry: CollectorRegistry, snap: Snapshot) -> ReferralCounts:
    """Read the tracker's series from its registry, and the router's referral refusals."""
    totals: Counter[str] = Counter()
    for family in registry.collect():
        for sample in family.samples:
            totals[sample.name] += round(sample.value)
    router = sum(
        n
        for reason, n in snap.rejected_by_reason().items()
        if reason.startswith("referral_")
    )
    return ReferralCounts(
        open=totals["puente_referrals_open"],
        overdue=totals["puente_referrals_overdue_cases"],
        notices=totals["puente_referrals_notices_total"],
        refused=router + totals["puente_referrals_transitions_refused_total"],
    )


@dataclass(frozen=True)
class IndicatorCounts:
    """The indicators service's picture: events counted, totals past the threshold."""

    counted: int = 0
    # Indicators whose current (provisional) total passes disclosure control; it is
    # published once its period is released.
    published: int = 0


def indicator_counts(registry: CollectorRegistry) -> IndicatorCounts:
    """Read the indicators service's series from its registry."""
    counted, published = 0, 0
    for family in registry.collect():
        for sample in family.samples:
            if sample.name == "puente_indicators_events_total":
                counted += round(sample.value)
            elif sample.name == "puente_indicator_total":
                published += 1
    return IndicatorCounts(counted=counted, published=published)
