"""EXPIRED: the one transition only the hub publishes, when the policy says so."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from services.contracts import codec, lifecycle, topics
from services.contracts.catalog import Catalog
from services.policy import Policy, load_policy
from services.referrals.deadlines import DeadlineChecker, Deadlines
from services.referrals.machine import (
    Referral,
    TransitionRefusedError,
    apply,
    transition_of,
)
from services.referrals.outbound import prepare_expired
from services.referrals.settings import TRACKER_ID
from services.referrals.store import Store
from services.runtime.pubsub import Prepared
from services.runtime.settings import REPO_ROOT
from tests.unit.referrals.support import START, event

POLICY_DIR = REPO_ROOT / "deploy" / "policy"
LIFECYCLE_FIELDS = {
    "payload.referral_id",
    "payload.lifecycle_event",
    "payload.status",
    "payload.previous_status",
    "payload.referring_institution_id",
    "payload.receiving_institution_id",
}


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


def checker_of(
    store: Store, catalog: Catalog, deadlines: Deadlines, clock: Clock
) -> DeadlineChecker:
    def expire(referrals: Sequence[Referral], now: datetime) -> list[Prepared]:
        return prepare_expired(catalog, referrals, TRACKER_ID, now)

    return DeadlineChecker(store, deadlines, clock, expire=expire)


def expired_events(catalog: Catalog, store: Store) -> list[Any]:
    referral = topics.inbound(TRACKER_ID, "referral")
    return [
        codec.decode(catalog, p.value)[1] for p in store.unsent() if p.topic == referral
    ]


def test_a_referral_nobody_serves_expires_when_the_policy_says(
    deadlines: Deadlines,
) -> None:
    referral = apply(None, event("CREATED", None, urgency="IMMEDIATE_24H"))
    assert deadlines.expires_at(referral) == START + timedelta(days=15) - timedelta(
        hours=9
    )  # 14 days, to the end of that day in El Salvador (START is 09:00 there)
    in_service = apply(
        apply(referral, event("ACCEPTED", "SENT", at=START + timedelta(hours=1))),
        event("SERVICE_STARTED", "ACCEPTED", at=START + timedelta(hours=2)),
    )
    assert deadlines.expires_at(in_service) is None


def test_the_hub_queues_one_expired_event_however_often_it_checks(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "tracker.sqlite")
    referral_id = str(uuid.uuid4())
    store.apply([event("CREATED", None, referral_id=referral_id)])
    clock = Clock(START + timedelta(days=13))
    checker = checker_of(store, catalog, deadlines, clock)
    assert checker.check().expired == []
    clock.now = START + timedelta(days=15)
    assert checker.check().expired == [referral_id]
    assert checker.check().expired == []
    [datum] = expired_events(catalog, store)
    assert datum["envelope"]["source_institution_id"] == TRACKER_ID
    payload = datum["payload"]
    assert (payload["lifecycle_event"], payload["status"]) == ("EXPIRED", "EXPIRED")
    assert payload["previous_status"] == "SENT"
    assert payload["subject_identity"] is None
    assert payload["subject_location"] is None
    store.close()


def test_the_router_admits_expired_from_the_hub_only(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "tracker.sqlite")
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])
    checker_of(store, catalog, deadlines, Clock(START + timedelta(days=15))).check()
    [datum] = expired_events(catalog, store)
    payload = datum["payload"]
    assert lifecycle.transition_problem(payload, TRACKER_ID) is None
    reason, _ = lifecycle.transition_problem(payload, "dgme") or ("", "")
    assert reason == lifecycle.PARTY_MISMATCH
    store.close()


def test_the_parties_get_only_the_lifecycle_fields_of_an_expiry(
    catalog: Catalog, deadlines: Deadlines, policy: Policy, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "tracker.sqlite")
    store.apply([event("CREATED", None, referral_id=str(uuid.uuid4()))])  # a child
    checker_of(store, catalog, deadlines, Clock(START + timedelta(days=15))).check()
    [datum] = expired_events(catalog, store)
    assert policy.may_publish(TRACKER_ID, "referral")
    delivered = {d.recipient: d for d in policy.decide("referral", datum) if d.delivered}
    assert {"dgme", "conapina", TRACKER_ID} <= set(delivered)
    for party in ("dgme", "conapina"):  # not conapina's full child-protection view
        payload_fields = {
            p for p in delivered[party].projection.field_paths if p.startswith("payload.")
        }
        assert payload_fields == LIFECYCLE_FIELDS, party
    for decision in delivered.values():
        fields = set(decision.projection.field_paths)
        assert "payload.service_category" not in fields, decision.recipient
        assert "payload.consent" not in fields, decision.recipient
    store.close()


def test_the_tracker_closes_a_referral_when_its_expiry_comes_back(
    catalog: Catalog, deadlines: Deadlines, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "tracker.sqlite")
    referral_id = str(uuid.uuid4())
    store.apply([event("CREATED", None, referral_id=referral_id)])
    checker_of(store, catalog, deadlines, Clock(START + timedelta(days=15))).check()
    [datum] = expired_events(catalog, store)
    expired = transition_of(datum)
    assert expired.source == TRACKER_ID
    store.apply([expired])
    tracked = store.get(referral_id)
    assert tracked is not None
    assert tracked.referral.status == "EXPIRED"
    assert not tracked.referral.open
    store.close()


def test_an_institution_cannot_expire_a_referral() -> None:
    created = apply(None, event("CREATED", None))
    forged = event("EXPIRED", "SENT", source="dgme")
    with pytest.raises(TransitionRefusedError) as refused:
        apply(created, forged)
    assert refused.value.reason == lifecycle.PARTY_MISMATCH
    hub = event("EXPIRED", "SENT", source=TRACKER_ID, at=START + timedelta(days=15))
    assert apply(created, hub).status == "EXPIRED"
