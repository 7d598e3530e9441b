"""Who may move a referral, from which status, to which: every case, for each party."""

from __future__ import annotations

import dataclasses
from datetime import timedelta

import pytest

from services.contracts import lifecycle
from services.referrals.machine import Referral, TransitionRefusedError, apply
from tests.unit.referrals.support import RECEIVING, REFERRING, START, event, served

STATUSES = ("SENT", "ACCEPTED", "IN_SERVICE", "REJECTED", "DONE", "REVOKED", "EXPIRED")
# (status the referral is in, event) -> the status it leaves, written out by hand.
LEGAL = {
    ("SENT", "REVOKED"): "REVOKED",
    ("SENT", "REASSIGNED"): "SENT",
    ("SENT", "ACCEPTED"): "ACCEPTED",
    ("SENT", "REJECTED"): "REJECTED",
    ("SENT", "APPOINTMENT_SCHEDULED"): "ACCEPTED",  # scheduling accepts it
    ("ACCEPTED", "REVOKED"): "REVOKED",
    ("ACCEPTED", "REASSIGNED"): "SENT",
    ("ACCEPTED", "ACCEPTED"): "ACCEPTED",
    ("ACCEPTED", "APPOINTMENT_SCHEDULED"): "ACCEPTED",
    ("ACCEPTED", "SERVICE_STARTED"): "IN_SERVICE",
    ("ACCEPTED", "COMPLETED"): "DONE",
    ("IN_SERVICE", "REVOKED"): "REVOKED",
    ("IN_SERVICE", "REASSIGNED"): "SENT",
    ("IN_SERVICE", "COMPLETED"): "DONE",
}
LATER_EVENTS = sorted(set(lifecycle.TRANSITIONS) - {"CREATED"})
PARTIES = {"referring": REFERRING, "receiving": RECEIVING, "another": "mtps"}


def in_status(status: str) -> Referral:
    """A referral that is in ``status``."""
    created = apply(None, event("CREATED", None))
    return dataclasses.replace(created, status=status)


@pytest.mark.parametrize("party", sorted(PARTIES))
@pytest.mark.parametrize("name", LATER_EVENTS)
@pytest.mark.parametrize("status", STATUSES)
def test_a_later_event_moves_a_referral_only_from_its_author_along_an_edge(
    status: str, name: str, party: str
) -> None:
    author = lifecycle.author_of(name)
    legal = LEGAL.get((status, name))
    moved_by = event(name, status, source=PARTIES[party])
    if legal is not None and author == party:
        assert apply(in_status(status), moved_by).status == legal
        return
    with pytest.raises(TransitionRefusedError) as refused:
        apply(in_status(status), moved_by)
    expected = (
        lifecycle.TRANSITION_INVALID if author == party else lifecycle.PARTY_MISMATCH
    )
    assert refused.value.reason == expected


@pytest.mark.parametrize("party", sorted(PARTIES))
def test_only_the_referring_institution_creates_a_referral(party: str) -> None:
    created = event("CREATED", None, source=PARTIES[party])
    if party == "referring":
        referral = apply(None, created)
        assert (referral.status, referral.referring, referral.receiving) == (
            "SENT",
            REFERRING,
            RECEIVING,
        )
        return
    with pytest.raises(TransitionRefusedError) as refused:
        apply(None, created)
    assert refused.value.reason == lifecycle.PARTY_MISMATCH


@pytest.mark.parametrize("name", sorted({name for _, name in LEGAL}))
def test_nothing_but_creation_happens_to_a_referral_the_hub_never_saw(name: str) -> None:
    previous = next(status for status, event_name in LEGAL if event_name == name)
    with pytest.raises(TransitionRefusedError) as refused:
        apply(None, event(name, previous))
    assert refused.value.reason == lifecycle.UNKNOWN_REFERRAL


def test_no_institution_expires_a_referral_it_is_the_hubs_to_do() -> None:
    for source in (REFERRING, RECEIVING):
        with pytest.raises(TransitionRefusedError) as refused:
            apply(in_status("SENT"), event("EXPIRED", "SENT", source=source))
        assert refused.value.reason == lifecycle.PARTY_MISMATCH


def test_a_referral_is_created_once() -> None:
    with pytest.raises(TransitionRefusedError) as refused:
        apply(in_status("SENT"), event("CREATED", None))
    assert refused.value.reason == lifecycle.TRANSITION_INVALID


def test_the_parties_are_fixed_by_the_first_event() -> None:
    current = in_status("SENT")
    # minsal claims to have referred the case that dgme referred (and publishes as such)
    forged = event("REVOKED", "SENT", referring="minsal", source="minsal")
    with pytest.raises(TransitionRefusedError) as refused:
        apply(current, forged)
    assert refused.value.reason == lifecycle.PARTY_MISMATCH
    # mtps accepts, naming itself as the receiving institution
    hijack = event("ACCEPTED", "SENT", receiving="mtps", source="mtps")
    with pytest.raises(TransitionRefusedError) as refused:
        apply(current, hijack)
    assert refused.value.reason == lifecycle.PARTY_MISMATCH


def test_an_event_must_leave_the_status_the_referral_is_really_in() -> None:
    current = in_status("SENT")
    # legal edge (ACCEPTED -> IN_SERVICE) but the referral was never accepted
    with pytest.raises(TransitionRefusedError) as refused:
        apply(current, event("SERVICE_STARTED", "ACCEPTED"))
    assert refused.value.reason == lifecycle.TRANSITION_INVALID
    assert "out of order" in str(refused.value)


def test_a_reassignment_names_a_new_receiving_institution_and_restarts_its_clock() -> (
    None
):
    accepted = apply(
        apply(None, event("CREATED", None)),
        event("ACCEPTED", "SENT", at=START + timedelta(hours=2)),
    )
    assert accepted.acknowledged_at == START + timedelta(hours=2)
    later = START + timedelta(hours=5)
    moved = apply(accepted, event("REASSIGNED", "ACCEPTED", receiving="pgr", at=later))
    assert (moved.status, moved.receiving, moved.referring) == ("SENT", "pgr", REFERRING)
    assert moved.sent_at == later
    assert moved.acknowledged_at is None
    # the former receiving institution can no longer answer it
    answer = later + timedelta(hours=1)
    with pytest.raises(TransitionRefusedError) as refused:
        apply(moved, event("ACCEPTED", "SENT", at=answer))
    assert refused.value.reason == lifecycle.PARTY_MISMATCH
    taken = apply(moved, event("ACCEPTED", "SENT", receiving="pgr", at=answer))
    assert taken.status == "ACCEPTED"


def test_a_served_referral_records_when_it_was_acknowledged_started_and_closed() -> None:
    referral = None
    for step in served():
        referral = apply(referral, step)
    assert referral is not None
    assert referral.status == "DONE"
    assert not referral.open
    assert referral.acknowledged_at == START + timedelta(hours=1)
    assert referral.service_started_at == START + timedelta(hours=3)
    assert referral.closed_at == START + timedelta(hours=4)
    assert referral.events == 5


def test_an_event_older_than_the_last_transition_is_a_replay() -> None:
    accepted = apply(
        apply(None, event("CREATED", None)),
        event("ACCEPTED", "SENT", at=START + timedelta(hours=3)),
    )
    stale = event("APPOINTMENT_SCHEDULED", "ACCEPTED", at=START + timedelta(hours=1))
    with pytest.raises(TransitionRefusedError) as refused:
        apply(accepted, stale)
    assert refused.value.reason == lifecycle.TRANSITION_INVALID
    # within the parties' clock skew it is taken
    skewed = event("APPOINTMENT_SCHEDULED", "ACCEPTED", at=START + timedelta(hours=2.95))
    assert apply(accepted, skewed).status == "ACCEPTED"
