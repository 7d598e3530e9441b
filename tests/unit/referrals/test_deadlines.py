"""Deadlines by urgency and service group, in El Salvador time, with a test clock."""

from __future__ import annotations

import dataclasses
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import pytest

from services.referrals import deadlines as deadlines_module
from services.referrals.deadlines import DeadlineChecker, Deadlines
from services.referrals.errors import DeadlinesFileError
from services.referrals.machine import Referral, apply
from services.referrals.store import Store
from services.runtime.settings import REPO_ROOT
from tests.unit.referrals.support import START, event

POLICY = REPO_ROOT / "deploy" / "policy" / "referral_deadlines.toml"


@pytest.fixture(scope="module")
def deadlines() -> Deadlines:
    return Deadlines.load(POLICY)


class Clock:
    """A clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def sent(**changes: object) -> Referral:
    referral = apply(None, event("CREATED", None))
    return dataclasses.replace(referral, **changes)  # type: ignore[arg-type]


def test_a_childs_immediate_referral_is_overdue_at_24_hours(deadlines: Deadlines) -> None:
    referral = sent(service_group="HEALTH")
    assert deadlines.overdue(referral, START + timedelta(hours=23, minutes=59)) is None
    overdue = deadlines.overdue(referral, START + timedelta(hours=24))
    assert overdue is not None
    assert (overdue.stage, overdue.level) == ("acknowledge", 1)
    assert overdue.due_at == START + timedelta(hours=24)
    # escalated again 12 hours later
    second = deadlines.overdue(referral, START + timedelta(hours=36))
    assert second is not None
    assert second.level == 2


def test_a_days_deadline_ends_at_midnight_in_el_salvador(deadlines: Deadlines) -> None:
    # Monday 2 November 2026 at 23:30 in El Salvador is 05:30 UTC on Tuesday.
    late_monday = datetime(2026, 11, 3, 5, 30, tzinfo=UTC)
    referral = sent(
        urgency="STANDARD",
        service_group="HEALTH",
        sent_at=late_monday,
        updated_at=late_monday,
    )
    # 5 days: by the end of Saturday 7 November, local time (06:00 UTC on the 8th).
    assert deadlines.due(referral, "acknowledge") == datetime(
        2026, 11, 8, 6, 0, tzinfo=UTC
    )


def test_the_shorter_of_the_urgency_and_service_group_deadline_applies(
    deadlines: Deadlines,
) -> None:
    protection = sent(urgency="PRIORITY_72H", service_group="SPECIALISED_PROTECTION")
    health = sent(urgency="PRIORITY_72H", service_group="HEALTH")
    assert deadlines.due(protection, "acknowledge") == START + timedelta(hours=48)
    assert deadlines.due(health, "acknowledge") == START + timedelta(hours=72)


def test_an_earlier_response_date_set_by_the_referrer_applies(
    deadlines: Deadlines,
) -> None:
    referral = sent(service_group="HEALTH", response_due_at=START + timedelta(hours=6))
    assert deadlines.due(referral, "acknowledge") == START + timedelta(hours=6)


def test_the_supervisor_of_a_childs_case_is_child_protection_unless_it_is_a_party(
    deadlines: Deadlines,
) -> None:
    assert deadlines.supervisor(sent(receiving="minsal")) == "conapina"
    assert deadlines.supervisor(sent(receiving="conapina")) == "pgr"
    assert deadlines.supervisor(sent(receiving="minsal", is_minor=False)) == "rree_vmdmh"


def test_each_notice_is_issued_once_to_the_referrer_and_the_supervisor(
    tmp_path: Path, deadlines: Deadlines
) -> None:
    store = Store.open(tmp_path / "t.sqlite")
    store.apply([event("CREATED", None, receiving="minsal")])
    clock = Clock(START + timedelta(hours=25))
    checker = DeadlineChecker(store, deadlines, clock)
    first = checker.check()
    assert first.overdue == 1
    assert {(n.recipient, n.role, n.level) for n in first.issued} == {
        ("dgme", "referring", 1),
        ("conapina", "supervisor", 1),
    }
    assert checker.check().issued == []
    clock.now = START + timedelta(hours=37)
    assert {(n.recipient, n.level) for n in checker.check().issued} == {
        ("dgme", 2),
        ("conapina", 2),
    }
    assert len(store.notices("r-1")) == 4


def test_an_acknowledged_referral_is_no_longer_overdue_for_acknowledgement(
    tmp_path: Path, deadlines: Deadlines
) -> None:
    store = Store.open(tmp_path / "t.sqlite")
    store.apply([event("CREATED", None)])
    checker = DeadlineChecker(store, deadlines, Clock(START + timedelta(hours=30)))
    checker.check()
    store.apply([event("ACCEPTED", "SENT", at=START + timedelta(hours=30))])
    assert checker.check().overdue == 0
    tracked = store.get("r-1")
    assert tracked is not None
    assert tracked.overdue is None


def test_a_deadlines_file_without_every_urgency_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "d.toml"
    broken.write_text(
        "[urgency.STANDARD]\nacknowledge = { days = 5 }\nservice = { days = 30 }\n"
        "escalate = { days = 5 }\n"
    )
    with pytest.raises(DeadlinesFileError, match="IMMEDIATE_24H"):
        Deadlines.load(broken)


def test_without_a_time_zone_database_el_salvador_is_utc_minus_6(
    monkeypatch: pytest.MonkeyPatch, deadlines: Deadlines
) -> None:
    standard = sent(urgency="STANDARD", service_group="HEALTH")
    with_database = deadlines.due(standard, "acknowledge")

    def missing(name: str) -> ZoneInfo:
        raise ZoneInfoNotFoundError(name)

    monkeypatch.setattr(deadlines_module, "ZoneInfo", missing)
    assert deadlines_module.time_zone("America/El_Salvador").utcoffset(None) == timedelta(
        hours=-6
    )
    with pytest.raises(ZoneInfoNotFoundError):
        deadlines_module.time_zone("Europe/Madrid")
    assert Deadlines.load(POLICY).due(standard, "acknowledge") == with_database
