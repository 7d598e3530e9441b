"""Reading the router's series, histogram quantiles, and the demo's verdict."""

from __future__ import annotations

import math
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry, Counter, Gauge

from services.demo.tally import (
    IndicatorCounts,
    Published,
    Snapshot,
    check,
    indicator_counts,
    quantile,
    referral_counts,
    snapshot,
)
from services.referrals.metrics import TrackerCollector
from services.referrals.store import Store
from services.router.metrics import RouterMetrics
from tests.unit.referrals.support import START, event


def test_the_snapshot_reads_accepted_rejected_deliveries_latency_and_lag() -> None:
    registry = CollectorRegistry()
    metrics = RouterMetrics(registry)
    metrics.accepted.labels("dgme", "return_arrival").inc(3)
    metrics.accepted.labels("dgme", "border_crossing").inc(2)
    metrics.rejected.labels("minsal", "border_crossing", "not_allowed_to_publish").inc()
    metrics.rejected.labels("dgme", "referral", "invalid").inc(2)
    metrics.duplicates.labels("dgme", "referral").inc()
    metrics.deliveries.labels("conapina", "return_arrival", "FULL").inc(4)
    metrics.deliveries.labels("conapina", "referral", "PSEUDO_S").inc()
    metrics.deliveries.labels("rree_vmdmh", "return_arrival", "PSEUDO").inc(2)
    metrics.latency.labels("return_arrival").observe(0.02)
    metrics.latency.labels("referral").observe(0.2)
    metrics.lag.labels("puente-router").set(7)

    snap = snapshot(registry)

    assert snap.accepted_total == 5
    assert snap.rejected_total == 3
    assert snap.handled == 9
    assert snap.deliveries_total == 7
    assert snap.rejected_by_reason() == {"not_allowed_to_publish": 1, "invalid": 2}
    assert snap.by_source() == {"dgme": (5, 2), "minsal": (0, 1)}
    assert snap.deliveries_by_view() == {
        "conapina": {"FULL": 4, "PSEUDO_S": 1},
        "rree_vmdmh": {"PSEUDO": 2},
    }
    assert snap.latency_buckets[math.inf] == 2  # summed over event types
    assert snap.lag == 7


def test_an_empty_registry_gives_an_empty_snapshot() -> None:
    snap = snapshot(CollectorRegistry())
    assert snap.handled == 0
    assert snap.latency(0.5) is None


BUCKETS = {0.01: 0.0, 0.05: 50.0, 0.1: 90.0, 0.5: 100.0, math.inf: 100.0}


@pytest.mark.parametrize(
    ("q", "expected"),
    [(0.5, 0.05), (0.25, 0.03), (0.7, 0.075), (0.95, 0.3), (1.0, 0.5), (0.0, 0.01)],
)
def test_quantiles_interpolate_inside_the_bucket_like_prometheus(
    q: float, expected: float
) -> None:
    assert quantile(BUCKETS, q) == pytest.approx(expected)


def test_a_quantile_in_the_infinite_bucket_is_the_highest_finite_bound() -> None:
    assert quantile({0.1: 1.0, 1.0: 2.0, math.inf: 10.0}, 0.9) == 1.0


def test_no_observations_have_no_quantile() -> None:
    assert quantile({0.1: 0.0, math.inf: 0.0}, 0.5) is None
    assert quantile({}, 0.5) is None


def published(good: int, **bad: int) -> Published:
    out = Published()
    for _ in range(good):
        out.count("dgme", "border_crossing", None)
    for reason, count in bad.items():
        for _ in range(count):
            out.count("minsal", "referral", reason)
    return out


def routed(accepted: int, **rejected: int) -> Snapshot:
    return Snapshot(
        accepted={("dgme", "border_crossing"): float(accepted)},
        rejected={("minsal", "referral", r): float(n) for r, n in rejected.items()},
    )


def test_every_bad_input_rejected_with_its_reason_and_every_good_accepted_is_ok() -> None:
    verdict = check(
        published(10, invalid=2, undecodable=1), routed(10, invalid=2, undecodable=1)
    )
    assert verdict.ok
    assert (verdict.bad_sent, verdict.bad_matched) == (3, 3)


def test_a_rejection_under_another_reason_is_a_problem() -> None:
    verdict = check(published(10, invalid=2), routed(10, invalid=1, other=1))
    assert not verdict.ok
    assert any(
        p.startswith("invalid: 2 bad input(s) sent, 1 rejected") for p in verdict.problems
    )
    assert any(
        p.startswith("other: 0 bad input(s) sent, 1 rejected") for p in verdict.problems
    )


def test_a_good_input_not_accepted_is_a_problem() -> None:
    verdict = check(published(10), routed(9, invalid=1))
    assert not verdict.ok
    assert "10 good input(s) sent, 9 accepted by the router" in verdict.problems


def test_inputs_the_router_had_not_reached_are_reported() -> None:
    verdict = check(published(10, invalid=1), routed(7))
    assert "4 input(s) not yet routed when the demo stopped" in verdict.problems


def test_the_hubs_own_notices_are_routed_without_being_counted_as_sent() -> None:
    snap = Snapshot(
        accepted={
            ("dgme", "border_crossing"): 10.0,
            ("hub_referrals", "referral_overdue"): 4.0,
        }
    )
    verdict = check(published(10), snap)
    assert verdict.ok, verdict.problems
    assert snap.hub_own == 4


def test_the_referral_counts_read_the_trackers_series_and_the_routers_refusals(
    tmp_path: Path,
) -> None:
    store = Store.open(tmp_path / "tracker.sqlite")
    store.apply(
        [
            event("CREATED", None, referral_id="r-1"),
            event("CREATED", None, referral_id="r-2"),
            event("ACCEPTED", "SENT", referral_id="r-2", at=START + timedelta(hours=1)),
            # a forgery the tracker refused on its own
            event("CREATED", None, referral_id="r-2", event_id="again"),
        ]
    )
    store.close()
    registry = CollectorRegistry()
    registry.register(
        TrackerCollector(tmp_path / "tracker.sqlite", lambda: START + timedelta(days=1))
    )
    snap = Snapshot(
        rejected={
            ("minsal", "referral", "referral_party_mismatch"): 2.0,
            ("minsal", "referral", "invalid"): 5.0,
        }
    )
    counts = referral_counts(registry, snap)
    assert (counts.open, counts.refused) == (2, 3)


def test_the_indicator_counts_read_events_counted_and_totals_publishable() -> None:
    registry = CollectorRegistry()
    counted = Counter("puente_indicators_events", "counted", registry=registry)
    counted.inc(42)
    totals = Gauge("puente_indicator_total", "totals", ["indicator"], registry=registry)
    totals.labels("returns").set(30)
    totals.labels("borders").set(12)

    assert indicator_counts(registry) == IndicatorCounts(counted=42, published=2)
    assert indicator_counts(CollectorRegistry()) == IndicatorCounts()
