"""Overdue notices as events: what they hold, queued once, sent until acknowledged."""

from __future__ import annotations

import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry

from services.acl.plan import plan
from services.contracts import codec, topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.policy import Policy, load_policy
from services.referrals.deadlines import DeadlineChecker, Deadlines
from services.referrals.metrics import TrackerCollector
from services.referrals.outbound import OverdueNotice, prepare_overdue
from services.referrals.settings import TRACKER_ID
from services.referrals.store import Store
from services.runtime.pubsub import Prepared
from services.runtime.settings import REPO_ROOT
from tests.unit.referrals.support import START, event

POLICY_DIR = REPO_ROOT / "deploy" / "policy"


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(POLICY_DIR, catalog)


@pytest.fixture(scope="module")
def deadlines() -> Deadlines:
    return Deadlines.load(POLICY_DIR / "referral_deadlines.toml")


class Clock:
    """A clock the test sets."""

    def __init__(self, now: datetime) -> None:
        self.now = now

    def __call__(self) -> datetime:
        return self.now


def natural(catalog: Catalog, prepared: Prepared) -> Any:
    entry, datum = codec.decode(catalog, prepared.value)
    return codec_for(entry).to_natural(datum)


def tracker(
    tmp_path: Path, catalog: Catalog, deadlines: Deadlines, clock: Clock
) -> tuple[Store, DeadlineChecker]:
    store = Store.open(tmp_path / "tracker.sqlite")

    def announce(notices: Sequence[OverdueNotice], now: datetime) -> list[Prepared]:
        return prepare_overdue(catalog, notices, TRACKER_ID, now)

    return store, DeadlineChecker(store, deadlines, clock, announce)


def test_a_notice_holds_the_cases_coordinates_and_nothing_about_the_person(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    referral_id = str(uuid.uuid4())
    store, checker = tracker(tmp_path, catalog, deadlines, Clock(START))
    store.apply([event("CREATED", None, referral_id=referral_id)])
    checker.clock = Clock(START + timedelta(hours=24))
    checker.check()
    [prepared] = store.unsent()
    assert prepared.topic == topics.inbound(TRACKER_ID, "referral_overdue")
    assert prepared.key == referral_id.encode()
    record = natural(catalog, prepared)
    assert record["payload"] == {
        "referral_id": referral_id,
        "deadline": "ACKNOWLEDGE",
        "due_at": "2026-11-03T15:00:00.000Z",
        "escalation_level": 1,
        "urgency": "IMMEDIATE_24H",
        "service_group": "SPECIALISED_PROTECTION",
        "referring_institution_id": "dgme",
        "receiving_institution_id": "conapina",
        "supervising_institution_id": "pgr",
    }
    envelope = record["envelope"]
    assert envelope["source_institution_id"] == TRACKER_ID
    assert envelope["event_id"] == prepared.event_id
    for linked in ("subject_key", "group_key", "source_record_id", "consent_ref"):
        assert envelope.get(linked) is None, linked
    store.close()


def test_each_escalation_is_queued_once_however_often_it_is_checked(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    clock = Clock(START + timedelta(hours=24))
    store, checker = tracker(tmp_path, catalog, deadlines, clock)
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])
    checker.check()
    checker.check()
    assert len(store.unsent()) == 1
    clock.now = START + timedelta(hours=36)  # past the further escalation period
    checker.check()
    checker.check()
    levels = [natural(catalog, p)["payload"]["escalation_level"] for p in store.unsent()]
    assert levels == [1, 2]
    store.close()


def test_a_notice_waits_until_acknowledged_and_is_sent_again_byte_for_byte(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=40))
    )
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])
    checker.check()
    first = store.unsent()
    store.close()
    # A crash before the broker's acknowledgement was recorded: the same bytes again.
    store = Store.open(tmp_path / "tracker.sqlite")
    assert store.unsent() == first
    store.sent([first[0].event_id], START)
    assert store.unsent() == first[1:]
    assert store.outbox() == {"sent": 1, "waiting": 1}
    store.close()


def test_an_answered_referral_is_never_announced(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    referral_id = str(uuid.uuid4())
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=24))
    )
    store.apply(
        [
            event("CREATED", None, referral_id=referral_id),
            event(
                "ACCEPTED",
                "SENT",
                referral_id=referral_id,
                at=START + timedelta(hours=1),
            ),
        ]
    )
    checker.check()
    assert store.unsent() == []
    store.close()


def test_the_policy_routes_a_notice_to_the_referrer_and_the_supervisor_only(
    catalog: Catalog, deadlines: Deadlines, policy: Policy, tmp_path: Path
) -> None:
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=24))
    )
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])
    checker.check()
    [prepared] = store.unsent()
    _, datum = codec.decode(catalog, prepared.value)
    assert policy.may_publish(TRACKER_ID, "referral_overdue")
    delivered = {
        d.recipient: d.view
        for d in policy.decide("referral_overdue", datum)
        if d.delivered
    }
    assert delivered == {"dgme": "FULL", "pgr": "FULL"}
    store.close()


def test_an_adults_notice_reaches_the_oversight_under_its_own_referral_id(
    catalog: Catalog, deadlines: Deadlines, policy: Policy, tmp_path: Path
) -> None:
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=24))
    )
    adult = event(
        "CREATED",
        None,
        referral_id=str(uuid.uuid4()),
        is_minor=False,
        receiving="minsal",
        service_group="HEALTH",
    )
    store.apply([adult])
    checker.check()
    [prepared] = store.unsent()
    _, datum = codec.decode(catalog, prepared.value)
    [oversight] = [
        d
        for d in policy.decide("referral_overdue", datum)
        if d.delivered and d.recipient == "rree_vmdmh"
    ]
    assert oversight.view == "PSEUDO"

    # The same stand-in the oversight's referral stream gets for this referral.
    def own(value: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"rree_vmdmh:{value}"))

    seen = oversight.projection.apply(datum, None, own)
    assert str(seen["payload"]["referral_id"]) == own(adult.referral_id)
    store.close()


def test_the_acl_plan_lets_the_tracker_write_only_its_own_inbound_topics(
    policy: Policy,
) -> None:
    mine = [b for b in plan(policy) if b.principal == f"User:{TRACKER_ID}"]
    writes = {(b.pattern_type, b.name) for b in mine if b.operation == "WRITE"}
    assert writes == {("PREFIXED", f"hub.in.{TRACKER_ID}.")}
    assert topics.inbound(TRACKER_ID, "referral_overdue").startswith(
        f"hub.in.{TRACKER_ID}."
    )


def test_notices_waiting_in_the_outbox_are_a_metric_until_acknowledged(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=40))
    )
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])
    checker.check()
    registry = CollectorRegistry()
    registry.register(TrackerCollector(tmp_path / "tracker.sqlite", lambda: START))
    assert registry.get_sample_value("puente_referrals_outbox_unsent") == 2
    store.sent([e.event_id for e in store.unsent()], START)
    assert registry.get_sample_value("puente_referrals_outbox_unsent") == 0
    store.close()


def test_a_reassigned_referral_is_escalated_again_for_its_new_receiver(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    referral_id = str(uuid.uuid4())
    clock = Clock(START + timedelta(hours=40))
    store, checker = tracker(tmp_path, catalog, deadlines, clock)
    store.apply([event("CREATED", None, referral_id=referral_id)])
    checker.check()  # conapina never answered: levels 1 and 2
    reassigned = START + timedelta(hours=41)
    store.apply(
        [
            event(
                "REASSIGNED",
                "SENT",
                referral_id=referral_id,
                receiving="isdemu",
                at=reassigned,
            )
        ]
    )
    clock.now = reassigned + timedelta(hours=23)
    assert checker.check().issued == []  # isdemu's own clock runs
    clock.now = reassigned + timedelta(hours=24)
    issued = checker.check().issued
    # conapina, no longer a party, now supervises the child's case
    assert {(n.recipient, n.level) for n in issued} == {("dgme", 1), ("conapina", 1)}
    receivers = [
        natural(catalog, e)["payload"]["receiving_institution_id"]
        for e in store.published(referral_id)
    ]
    assert receivers == ["conapina", "conapina", "isdemu"]
    store.close()


def test_a_database_of_the_previous_tracker_keeps_its_notices_when_opened(
    tmp_path: Path,
) -> None:
    path = tmp_path / "tracker.sqlite"
    store = Store.open(path)
    store.apply([event("CREATED", None, referral_id="r-1")])
    store.close()
    # The notices table as the previous version made it (no receipt in its key).
    with sqlite3.connect(path) as db:
        db.execute("DROP TABLE notices")
        db.execute(
            "CREATE TABLE notices (referral_id TEXT NOT NULL, stage TEXT NOT NULL, "
            "level INTEGER NOT NULL, recipient TEXT NOT NULL, role TEXT NOT NULL, "
            "due_at INTEGER NOT NULL, issued_at INTEGER NOT NULL, "
            "PRIMARY KEY (referral_id, stage, level, recipient))"
        )
        db.execute(
            "INSERT INTO notices VALUES "
            "('r-1', 'acknowledge', 1, 'dgme', 'referring', 1, 2)"
        )
    db.close()
    store = Store.open(path)
    [kept] = store.notices("r-1")
    assert (kept.recipient, kept.level, kept.received_at) == ("dgme", 1, START)
    store.close()


def test_an_answer_clears_the_overdue_mark_at_once_not_at_the_next_check(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    referral_id = str(uuid.uuid4())
    store, checker = tracker(
        tmp_path, catalog, deadlines, Clock(START + timedelta(hours=25))
    )
    store.apply([event("CREATED", None, referral_id=referral_id)])
    checker.check()
    registry = CollectorRegistry()
    registry.register(TrackerCollector(tmp_path / "tracker.sqlite", lambda: START))
    child = {"urgency": "IMMEDIATE_24H", "stage": "acknowledge", "minor": "true"}
    assert registry.get_sample_value("puente_referrals_overdue_cases", child) == 1
    late = START + timedelta(hours=26)
    store.apply([event("ACCEPTED", "SENT", referral_id=referral_id, at=late)])
    # what pages (PuenteChildReferralUnacknowledged) stops before the next check
    assert registry.get_sample_value("puente_referrals_overdue_cases", child) == 0
    tracked = store.get(referral_id)
    assert tracked is not None
    assert tracked.overdue is None
    store.close()
