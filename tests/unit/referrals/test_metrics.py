"""The tracker's metrics come from its database: open, overdue, durations, notices."""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.referrals.deadlines import DeadlineChecker, Deadlines
from services.referrals.metrics import TrackerCollector, age_bucket
from services.referrals.store import Store
from services.runtime.settings import REPO_ROOT
from tests.unit.referrals.support import START, event, served

DEADLINES = REPO_ROOT / "deploy" / "policy" / "referral_deadlines.toml"


def registry_for(path: Path, hours: float) -> CollectorRegistry:
    registry = CollectorRegistry()
    registry.register(TrackerCollector(path, lambda: START + timedelta(hours=hours)))
    return registry


def test_the_metrics_describe_open_overdue_and_answered_referrals(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = Store.open(path)
    store.apply(served("r-served"))
    store.apply([event("CREATED", None, referral_id="r-late", receiving="minsal")])
    DeadlineChecker(
        store, Deadlines.load(DEADLINES), lambda: START + timedelta(hours=30)
    ).check()
    store.close()
    registry = registry_for(path, 30)

    def value(name: str, **labels: str) -> float | None:
        return registry.get_sample_value(name, labels)

    assert (
        value(
            "puente_referrals_open",
            receiving_institution="minsal",
            urgency="IMMEDIATE_24H",
            age_bucket="1-3d",
        )
        == 1
    )
    assert (
        value(
            "puente_referrals_overdue",
            receiving_institution="minsal",
            urgency="IMMEDIATE_24H",
            stage="acknowledge",
            level="1",
            minor="true",
        )
        == 1
    )
    overdue = {"urgency": "IMMEDIATE_24H", "stage": "acknowledge"}
    assert value("puente_referrals_overdue_cases", minor="true", **overdue) == 1
    assert value("puente_referrals_overdue_cases", minor="false", **overdue) == 0
    # r-served was accepted an hour after it was sent, and served two hours later
    ack = {"urgency": "IMMEDIATE_24H"}
    assert value("puente_referrals_time_to_acknowledge_seconds_count", **ack) == 1
    assert value("puente_referrals_time_to_acknowledge_seconds_sum", **ack) == 3600
    assert value("puente_referrals_time_to_service_seconds_sum", **ack) == 3 * 3600
    assert (
        value(
            "puente_referrals_notices_total",
            role="supervisor",
            stage="acknowledge",
            level="1",
        )
        == 1
    )


def test_the_age_buckets_cover_every_age() -> None:
    assert [age_bucket(timedelta(hours=h)) for h in (0, 30, 100, 200, 1000)] == [
        "0-24h",
        "1-3d",
        "3-7d",
        "7-30d",
        "30d+",
    ]


def test_notices_are_exported_as_zeros_before_any_is_issued(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = Store.open(path)
    store.apply(served("r-served"))
    store.close()
    registry = registry_for(path, 1)
    for role in ("referring", "supervisor"):
        labels = {"role": role, "stage": "service", "level": "2"}
        assert registry.get_sample_value("puente_referrals_notices_total", labels) == 0
