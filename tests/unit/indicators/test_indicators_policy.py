"""What the access policy delivers to the indicators service (hub_indicators).

It must get every field the catalogue counts by, for every event it counts (an
escalated record, such as an unaccompanied child's return, included), and never
a name, a document, a contact or a subject key.
"""

from __future__ import annotations

from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue, load_catalogue
from services.policy import Policy
from services.policy.loader import tree_of
from services.policy.policy import field_value
from services.runtime.settings import REPO_ROOT
from tests.unit.policy.records import ids, record

RECIPIENT = "hub_indicators"
COUNTED = ("return_arrival", "border_crossing", "displacement_registration", "referral")
POLICY = REPO_ROOT / "deploy" / "policy"


@pytest.fixture(scope="module")
def catalogue(catalog: Catalog, policy: Policy) -> Catalogue:
    return load_catalogue(POLICY, catalog, policy)


def delivered(policy: Policy, event_type: str, datum: Any) -> dict[str, Any] | None:
    """What hub_indicators receives of ``datum`` (None: nothing)."""
    for decision in policy.decide(event_type, datum):
        if decision.recipient == RECIPIENT and decision.delivered:
            return decision.projection.apply(datum, "r1:pseudonym", ids)
    return None


def leaves(value: Any, prefix: str = "") -> dict[str, Any]:
    if isinstance(value, dict):
        out: dict[str, Any] = {}
        for k, v in value.items():
            out.update(leaves(v, f"{prefix}.{k}" if prefix else k))
        return out
    if isinstance(value, list):
        out = {}
        for item in value:
            out.update(leaves(item, prefix))
        return out
    return {prefix: value}


@pytest.mark.parametrize("event_type", COUNTED)
def test_the_indicators_view_keeps_every_field_the_catalogue_counts_by(
    policy: Policy, catalogue: Catalogue, event_type: str
) -> None:
    rules = policy.rules_for(RECIPIENT, event_type)
    assert rules, f"no rule delivers {event_type} to {RECIPIENT}"
    kept = set(rules[0].latest.field_paths)
    assert catalogue.fields_read(event_type) <= kept


@pytest.mark.parametrize("event_type", COUNTED)
def test_the_indicators_service_never_sees_a_name_a_document_or_a_subject_key(
    catalog: Catalog, policy: Policy, event_type: str
) -> None:
    datum = record(catalog, event_type)
    got = delivered(policy, event_type, datum)
    assert got is not None
    tree = tree_of(catalog.versions(event_type)[-1])
    for path in leaves(got):
        node = tree.get(path)
        assert node is not None, path
        assert node.sensitivity not in {"DIRECT_IDENTIFIER", "HIGHLY_SENSITIVE"}, path
    assert field_value(got, "envelope.subject_key") is None
    text = repr(got)
    for secret in ("Ana", "Pérez", "01234567", "+503", "Colonia Centro"):
        assert secret not in text


@pytest.mark.parametrize(
    ("event_type", "changes"),
    [
        (
            "return_arrival",
            {
                "payload.person_profile.is_minor": True,
                "payload.person_profile.age_group": "AGE_12_17",
                "payload.accompaniment": "CHILD_UNACCOMPANIED",
                "payload.protection_flags": ["UNACCOMPANIED_CHILD"],
            },
        ),
        ("return_arrival", {"payload.needs_protection_followup": True}),
        ("return_arrival", {"payload.protection_flags": ["GBV_SURVIVOR"]}),
        (
            "border_crossing",
            {
                "payload.traveller_profile.is_minor": True,
                "payload.minor_travel": {
                    "accompanied_by": "UNACCOMPANIED",
                    "authorization": "NONE_PRESENTED",
                },
            },
        ),
        ("referral", {"payload.service_category": "GBV_SPECIALISED"}),
    ],
)
def test_escalated_records_are_still_counted(
    catalog: Catalog, policy: Policy, event_type: str, changes: dict[str, Any]
) -> None:
    datum = record(catalog, event_type, changes)
    assert delivered(policy, event_type, datum) is not None


def test_only_the_indicators_service_receives_records_for_official_statistics(
    policy: Policy,
) -> None:
    # Escalated records reach OFFICIAL_STATISTICS rules (counts only): no other
    # recipient may hold such a rule, or it would get them too.
    statistics = {r.recipient for r in policy.rules if r.purpose == "OFFICIAL_STATISTICS"}
    assert statistics == {RECIPIENT}


@pytest.mark.parametrize("event_type", COUNTED)
def test_the_indicators_view_keeps_nothing_the_catalogue_does_not_count_by(
    policy: Policy, catalogue: Catalogue, event_type: str
) -> None:
    read = catalogue.fields_read(event_type)
    kept = policy.rules_for(RECIPIENT, event_type)[0].latest.field_paths
    for path in (p for p in kept if p.startswith("payload.")):
        assert path in read or any(r.startswith(f"{path}.") for r in read), path
