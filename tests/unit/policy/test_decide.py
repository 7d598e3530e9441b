"""Deciding on one record: consent, overrides, recipients from fields, rule order."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.policy import Decision, Policy, load_policy
from services.runtime.settings import REPO_ROOT
from tests.unit.policy.records import consent, record


def _for(decisions: list[Decision], recipient: str) -> list[tuple[str, bool, str | None]]:
    return [
        (d.rule_id, d.delivered, d.withheld_reason)
        for d in decisions
        if d.recipient == recipient
    ]


@pytest.mark.parametrize(
    ("consent_record", "reason"),
    [
        (consent(obtained=False), "consent_not_obtained"),
        (consent("EMPLOYMENT_REINTEGRATION", withdrawn=True), "consent_withdrawn"),
        (consent("HEALTH_CARE"), "consent_scope_missing"),
    ],
)
def test_a_matching_rule_without_valid_consent_is_withheld_with_its_reason(
    policy: Policy, catalog: Catalog, consent_record: dict[str, Any], reason: str
) -> None:
    datum = record(catalog, "return_arrival", {"payload.consent": consent_record})
    assert _for(policy.decide("return_arrival", datum), "rree_vmdmh") == [
        ("rree_vmdmh-ra-employment", False, reason),
        ("rree_vmdmh-ra-monitoring", True, None),
    ]


def test_a_recipient_gets_at_most_one_delivery_per_record(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(
        catalog,
        "return_arrival",
        {"payload.consent": consent("EMPLOYMENT_REINTEGRATION")},
    )
    decisions = policy.decide("return_arrival", datum)
    assert _for(decisions, "rree_vmdmh") == [("rree_vmdmh-ra-employment", True, None)]
    delivered = [d.recipient for d in decisions if d.delivered]
    assert len(delivered) == len(set(delivered))


def test_a_recorded_consent_override_lets_a_referral_through(
    policy: Policy, catalog: Catalog
) -> None:
    changes = {
        "payload.consent": consent(obtained=False),
        "payload.consent_overridden": True,
        "payload.override_reason": "RISK_TO_LIFE",
    }
    datum = record(catalog, "referral", changes)
    assert _for(policy.decide("referral", datum), "minsal") == [
        ("referral-to-health", True, None)
    ]


def test_an_override_without_a_reason_does_not_count(
    policy: Policy, catalog: Catalog
) -> None:
    changes = {
        "payload.consent": consent(obtained=False),
        "payload.consent_overridden": True,
    }
    datum = record(catalog, "referral", changes)
    assert _for(policy.decide("referral", datum), "minsal") == [
        ("referral-to-health", False, "consent_not_obtained")
    ]


def test_a_referral_to_an_unknown_institution_is_reported_once_and_not_delivered(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(catalog, "referral", {"payload.receiving_institution_id": "mun_0623"})
    unknown = [d for d in policy.decide("referral", datum) if not d.delivered]
    assert [(d.recipient, d.withheld_reason) for d in unknown] == [
        ("mun_0623", "unknown_recipient")
    ]


def test_a_recipient_field_holding_free_text_is_not_repeated_in_the_decision(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(
        catalog,
        "referral",
        {"payload.receiving_institution_id": "Ana Pérez, Col. Centro"},
    )
    unknown = [d for d in policy.decide("referral", datum) if not d.delivered]
    assert [d.recipient for d in unknown] == ["invalid"]


def test_a_referral_to_a_member_no_rule_serves_goes_nowhere(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(catalog, "referral", {"payload.receiving_institution_id": "marn"})
    assert all(d.recipient != "marn" for d in policy.decide("referral", datum))


def test_decisions_carry_the_rule_purpose_basis_and_view(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(catalog, "return_arrival", {"payload.person_profile.is_minor": True})
    [decision] = [
        d for d in policy.decide("return_arrival", datum) if d.recipient == "conapina"
    ]
    assert (decision.view, decision.purpose, decision.legal_basis) == (
        "FULL",
        "CHILD_PROTECTION",
        "BEST_INTEREST_OF_CHILD",
    )
    assert decision.event_type == "return_arrival"
    assert not decision.rekeyed


def test_an_unknown_event_type_gets_no_decisions(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(catalog, "return_arrival")
    assert policy.decide("no_such_event", datum) == []


def test_publish_rights_follow_the_institutions_file(policy: Policy) -> None:
    assert policy.may_publish("dgme", "return_arrival")
    assert policy.may_publish("mjsp_dnavmf", "displacement_registration")
    assert not policy.may_publish("mjsp_dnavmf", "return_arrival")
    assert not policy.may_publish("marn", "referral")
    assert not policy.may_publish("nobody", "referral")
    assert policy.knows("conapina")
    assert not policy.knows("conna")


def test_receive_rights_list_every_recipient_a_rule_can_reach(policy: Policy) -> None:
    assert policy.receive_rights["conapina"] == {
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
        "referral_overdue",
    }
    assert policy.receive_rights["minsal"] == {
        "return_arrival",
        "referral",
        "referral_overdue",
    }
    for silent in ("marn", "bcr", "bcr_onec", "ace", "pddh", "cnctp"):
        assert silent not in policy.receive_rights


def test_a_condition_that_fails_on_a_record_withholds_its_rule(
    tmp_path: Path, catalog: Catalog
) -> None:
    policy_dir = tmp_path / "policy"
    (policy_dir / "rules").mkdir(parents=True)
    source = REPO_ROOT / "deploy" / "policy"
    (policy_dir / "institutions.toml").write_text(
        (source / "institutions.toml").read_text()
    )
    (policy_dir / "rules" / "return_arrival.toml").write_text(
        """
[[rule]]
id = "fragile"
recipient = "minsal"
condition = "starts_with(payload.employment_profile.occupation_isco08, '7')"
view = "PSEUDO"
purpose = "HEALTH_CARE"
legal_basis = "LEGAL_MANDATE"
"""
    )
    fragile = load_policy(policy_dir, catalog)
    datum = record(catalog, "return_arrival", {"payload.employment_profile": None})
    assert [
        (d.delivered, d.withheld_reason) for d in fragile.decide("return_arrival", datum)
    ] == [(False, "condition_error")]
    fine = record(catalog, "return_arrival")
    assert [d.delivered for d in fragile.decide("return_arrival", fine)] == [True]


def test_the_policy_version_is_a_content_hash_that_changes_with_any_file(
    tmp_path: Path, catalog: Catalog, policy: Policy
) -> None:
    copy = tmp_path / "policy"
    shutil.copytree(REPO_ROOT / "deploy" / "policy", copy)
    assert load_policy(copy, catalog).version == policy.version
    assert policy.version.startswith("sha256:")
    assert len(policy.version) == 7 + 16
    rules = copy / "rules" / "border_crossing.toml"
    rules.write_text(rules.read_text() + "\n# reviewed\n")
    assert load_policy(copy, catalog).version != policy.version
