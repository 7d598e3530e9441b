"""Who may say what about a referral: the rules the router and the tracker share."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.contracts import codec, lifecycle, topics
from services.contracts.catalog import Catalog
from services.policy import SubjectKeys, load_policy
from services.router.pipeline import Accepted, Inbound, Limits, Pipeline, Rejected
from services.runtime.settings import REPO_ROOT
from tests.unit.policy.records import record

NOW = datetime(2026, 11, 3, tzinfo=UTC)
# the status each event leaves, as its author would write it
BEFORE = {"CREATED": None, "COMPLETED": "IN_SERVICE", "SERVICE_STARTED": "ACCEPTED"}


def _payload(event: str, status: str, previous: str | None = "") -> dict[str, Any]:
    return {
        "lifecycle_event": event,
        "status": status,
        "previous_status": BEFORE.get(event, "SENT") if previous == "" else previous,
        "referring_institution_id": "rree_vmdmh",
        "receiving_institution_id": "minsal",
    }


@pytest.mark.parametrize(
    ("event", "status", "source"),
    [
        ("CREATED", "SENT", "rree_vmdmh"),
        ("REVOKED", "REVOKED", "rree_vmdmh"),
        ("REASSIGNED", "SENT", "rree_vmdmh"),
        ("ACCEPTED", "ACCEPTED", "minsal"),
        ("REJECTED", "REJECTED", "minsal"),
        ("APPOINTMENT_SCHEDULED", "ACCEPTED", "minsal"),
        ("SERVICE_STARTED", "IN_SERVICE", "minsal"),
        ("COMPLETED", "DONE", "minsal"),
    ],
)
def test_each_transition_is_accepted_from_its_author(
    event: str, status: str, source: str
) -> None:
    assert lifecycle.transition_problem(_payload(event, status), source) is None


@pytest.mark.parametrize(
    ("event", "status", "source", "words"),
    [
        ("CREATED", "SENT", "minsal", "from the referring institution (rree_vmdmh)"),
        ("REVOKED", "REVOKED", "minsal", "referring institution"),
        ("ACCEPTED", "ACCEPTED", "rree_vmdmh", "from the receiving institution (minsal)"),
        ("COMPLETED", "DONE", "rree_vmdmh", "receiving institution"),
        ("EXPIRED", "EXPIRED", "minsal", "the hub's to publish"),
        ("ACCEPTED", "DONE", "minsal", "leaves a referral in ACCEPTED"),
    ],
)
def test_a_transition_from_anyone_else_or_with_another_status_is_refused(
    event: str, status: str, source: str, words: str
) -> None:
    problem = lifecycle.transition_problem(_payload(event, status), source)
    assert problem is not None
    assert words in problem[1]


def test_a_receiving_institution_cannot_forge_a_referral_in_another_ones_name(
    catalog: Catalog,
) -> None:
    policy = load_policy(REPO_ROOT / "deploy" / "policy", catalog)
    limits = Limits(max_event_bytes=1 << 20, future_skew=timedelta(days=1))
    pipeline = Pipeline(catalog, policy, SubjectKeys(bytes(range(32))), limits)
    forged = record(
        catalog,
        "referral",
        {
            "envelope.source_institution_id": "minsal",
            "payload.referring_institution_id": "rree_vmdmh",
            "payload.receiving_institution_id": "minsal",
        },
    )
    entry = catalog.get("referral")
    value = codec.encode(entry, forged)
    inbound = Inbound(topics.inbound("minsal", "referral"), 0, 1, None, value, 0)
    refused = pipeline.inspect(inbound, NOW)
    assert isinstance(refused, Rejected)
    assert refused.reason == lifecycle.PARTY_MISMATCH
    assert refused.source == "minsal"  # the answer goes back to the forger
    accepted_from_author = record(
        catalog,
        "referral",
        {
            "envelope.source_institution_id": "minsal",
            "payload.referring_institution_id": "rree_vmdmh",
            "payload.receiving_institution_id": "minsal",
            "payload.lifecycle_event": "ACCEPTED",
            "payload.status": "ACCEPTED",
            "payload.previous_status": "SENT",
        },
    )
    value = codec.encode(entry, accepted_from_author)
    inbound = Inbound(topics.inbound("minsal", "referral"), 0, 2, None, value, 0)
    assert isinstance(pipeline.inspect(inbound, NOW), Accepted)


@pytest.mark.parametrize(
    ("previous", "status", "words"),
    [
        ("DONE", "IN_SERVICE", "a DONE referral is closed"),
        ("REVOKED", "ACCEPTED", "a REVOKED referral is closed"),
        ("SENT", "IN_SERVICE", "cannot move from SENT to IN_SERVICE"),
        (None, "ACCEPTED", "CREATED starts a referral"),
    ],
)
def test_an_out_of_order_transition_is_refused(
    previous: str | None, status: str, words: str
) -> None:
    event = {"IN_SERVICE": "SERVICE_STARTED", "ACCEPTED": "ACCEPTED"}[status]
    problem = lifecycle.transition_problem(_payload(event, status, previous), "minsal")
    assert problem is not None
    assert problem[0] == lifecycle.TRANSITION_INVALID
    assert words in problem[1]
