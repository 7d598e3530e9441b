"""The tracker database: event-sourced, idempotent, owner-only."""

from __future__ import annotations

import stat
from datetime import timedelta
from pathlib import Path

from services.contracts import lifecycle
from services.referrals.store import APPLIED, REFUSED, Store
from tests.unit.referrals.support import START, event, served


def test_the_database_is_readable_by_its_owner_only(tmp_path: Path) -> None:
    path = tmp_path / "referrals" / "tracker.sqlite"
    Store.open(path).close()
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


def test_a_batch_read_again_changes_nothing(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.sqlite")
    events = served()
    first = store.apply(events)
    before = store.snapshot()
    again = store.apply(events)
    assert (first.applied, first.duplicates) == (5, 0)
    assert (again.applied, again.duplicates, again.refused) == (0, 5, [])
    assert store.snapshot() == before
    tracked = store.get("r-1")
    assert tracked is not None
    assert tracked.referral.status == "DONE"


def test_a_refused_event_is_kept_in_the_history_with_its_reason(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.sqlite")
    created = event("CREATED", None)
    forged = event("ACCEPTED", "SENT", source="mtps", at=START + timedelta(hours=1))
    result = store.apply([created, forged])
    assert [reason for _, reason in result.refused] == [lifecycle.PARTY_MISMATCH]
    history = store.history("r-1")
    assert [(s.lifecycle_event, s.institution, s.outcome, s.reason) for s in history] == [
        ("CREATED", "dgme", APPLIED, None),
        ("ACCEPTED", "mtps", REFUSED, lifecycle.PARTY_MISMATCH),
    ]
    tracked = store.get("r-1")
    assert tracked is not None
    assert tracked.referral.status == "SENT"
    assert store.refusals() == {lifecycle.PARTY_MISMATCH: 1}


def test_state_survives_reopening_the_database(tmp_path: Path) -> None:
    path = tmp_path / "t.sqlite"
    store = Store.open(path)
    store.apply(served()[:2])
    store.close()
    reopened = Store.open(path, readonly=True)
    tracked = reopened.get("r-1")
    assert tracked is not None
    assert tracked.referral.status == "ACCEPTED"
    assert tracked.referral.acknowledged_at == START + timedelta(hours=1)
    assert [s.lifecycle_event for s in reopened.history("r-1")] == ["CREATED", "ACCEPTED"]


def test_an_answer_read_before_the_referral_waits_for_it(tmp_path: Path) -> None:
    store = Store.open(tmp_path / "t.sqlite")
    created, accepted, started, completed = (
        served()[0],
        served()[1],
        served()[3],
        served()[4],
    )
    early = store.apply([accepted, started])
    assert (early.applied, early.waiting, early.refused) == (0, 2, [])
    assert store.get("r-1") is None
    assert [e.lifecycle_event for e in store.waiting("r-1")] == [
        "ACCEPTED",
        "SERVICE_STARTED",
    ]
    # a redelivery of a waiting event is a duplicate
    assert store.apply([accepted]).duplicates == 1
    done = store.apply([created, completed])
    assert (done.applied, done.waiting, done.released) == (4, 0, 2)
    tracked = store.get("r-1")
    assert tracked is not None
    assert tracked.referral.status == "DONE"
    assert store.waiting() == []
    assert [s.lifecycle_event for s in store.history("r-1")] == [
        "CREATED",
        "ACCEPTED",
        "SERVICE_STARTED",
        "COMPLETED",
    ]
