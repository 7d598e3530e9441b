"""Every rule of the real policy: a record it must deliver and one it must not."""

from __future__ import annotations

from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.policy import Decision, Policy
from tests.unit.policy.records import consent, profile, record

Changes = dict[str, Any]


def _minor_bc(**more: Any) -> Changes:
    return {
        "payload.traveller_profile.is_minor": True,
        "payload.traveller_profile.age_group": "AGE_12_17",
        **{f"payload.{k}": v for k, v in more.items()},
    }


def _referral_to(receiver: str, *scopes: str, **more: Any) -> Changes:
    return {
        "payload.receiving_institution_id": receiver,
        "payload.consent": consent(*scopes),
        **{f"payload.{k}": v for k, v in more.items()},
    }


# The hub's expiry of a referral (the base one: dgme to minsal, an adult).
_EXPIRED: Changes = {
    "envelope.source_institution_id": "hub_referrals",
    "payload.lifecycle_event": "EXPIRED",
    "payload.status": "EXPIRED",
    "payload.previous_status": "SENT",
}

# rule id -> (event type, changes that must deliver, changes that must not; None
# for a rule that delivers every record of its event type)
CASES: dict[str, tuple[str, Changes, Changes | None]] = {
    "dgme-ra-owner": (
        "return_arrival",
        {},
        {"envelope.source_institution_id": "mjsp_dnavmf"},
    ),
    "conapina-ra-minor": (
        "return_arrival",
        {"payload.person_profile.is_minor": True},
        {"payload.person_profile.is_minor": False},
    ),
    "rree_vmdmh-ra-employment": (
        "return_arrival",
        {"payload.consent": consent("EMPLOYMENT_REINTEGRATION")},
        {"payload.consent": consent("HEALTH_CARE")},
    ),
    "rree_vmdmh-ra-monitoring": (
        "return_arrival",
        {"payload.consent": consent(obtained=False)},
        # with consent the employment rule serves rree_vmdmh instead
        {"payload.consent": consent("EMPLOYMENT_REINTEGRATION")},
    ),
    "minsal-ra-health": (
        "return_arrival",
        {"payload.protection_flags": ["PREGNANT_OR_LACTATING"]},
        {"payload.protection_flags": ["NO_SUPPORT_NETWORK"]},
    ),
    "mtps-ra-job-registry": (
        "return_arrival",
        {
            "payload.employment_profile.interested_in_job_placement": True,
            "payload.consent": consent("EMPLOYMENT_REINTEGRATION"),
        },
        {
            "payload.employment_profile.interested_in_job_placement": False,
            "payload.consent": consent("EMPLOYMENT_REINTEGRATION"),
        },
    ),
    "mjsp_dnavmf-ra-protection": (
        "return_arrival",
        {
            "payload.protection_flags": ["INTERNATIONAL_PROTECTION_NEED"],
            "payload.consent": consent("VICTIM_ASSISTANCE"),
        },
        {
            "payload.protection_flags": ["GBV_SURVIVOR"],
            "payload.consent": consent("VICTIM_ASSISTANCE"),
        },
    ),
    "rnpn-ra-documentation": (
        "return_arrival",
        {
            "payload.has_valid_dui": False,
            "payload.consent": consent("IDENTITY_DOCUMENTATION"),
        },
        {
            "payload.has_valid_dui": None,
            "payload.consent": consent("IDENTITY_DOCUMENTATION"),
        },
    ),
    "dgme-bc-owner": (
        "border_crossing",
        {},
        {"envelope.source_institution_id": "rree"},
    ),
    "conapina-bc-minor-alert": (
        "border_crossing",
        _minor_bc(
            outcome="REFUSED", refusal_reason="MINOR_WITHOUT_REQUIRED_AUTHORIZATION"
        ),
        _minor_bc(minor_travel={"accompanied_by": "BOTH_PARENTS"}),
    ),
    "rree_vmdmh-bc-labour-mobility": (
        "border_crossing",
        {"payload.labour_mobility_programme": "US_H2A"},
        {"payload.labour_mobility_programme": None},
    ),
    "mjsp_dnavmf-dr-violence-owner": (
        "displacement_registration",
        {},
        {"payload.regime": "DISASTER_CIVIL_PROTECTION"},
    ),
    "migobdt_dgpc-dr-disaster-owner": (
        "displacement_registration",
        {"payload.regime": "DISASTER_CIVIL_PROTECTION", "payload.hazard_type": "FLOOD"},
        {"payload.regime": "OTHER"},
    ),
    "conapina-dr-children": (
        "displacement_registration",
        {
            "payload.composition": [
                {"sex": "FEMALE", "age_group": "AGE_30_59", "count": 1},
                {"sex": "MALE", "age_group": "AGE_5_11", "count": 1},
            ]
        },
        {
            "payload.composition": [
                {"sex": "MALE", "age_group": "AGE_5_11", "count": 0},
                {"sex": "FEMALE", "age_group": "AGE_30_59", "count": 2},
            ]
        },
    ),
    "referral-to-health": (
        "referral",
        _referral_to("minsal", "HEALTH_CARE"),
        _referral_to("mtps", "HEALTH_CARE"),
    ),
    "referral-to-employment": (
        "referral",
        _referral_to("mtps", "EMPLOYMENT_REINTEGRATION"),
        _referral_to("minsal", "EMPLOYMENT_REINTEGRATION"),
    ),
    "referral-to-education": (
        "referral",
        _referral_to("mineducyt", "EDUCATION_CONTINUITY"),
        _referral_to("mineducyt", "HEALTH_CARE"),
    ),
    "referral-to-legal-aid": (
        "referral",
        _referral_to("pgr", "LEGAL_AID"),
        _referral_to("pgr", "HEALTH_CARE"),
    ),
    "referral-to-victim-assistance": (
        "referral",
        _referral_to("isdemu", "VICTIM_ASSISTANCE", service_category="GBV_SPECIALISED"),
        _referral_to("rnpn", "VICTIM_ASSISTANCE"),
    ),
    "referral-to-identity-documentation": (
        "referral",
        _referral_to("rnpn", "IDENTITY_DOCUMENTATION"),
        _referral_to("rnpn"),
    ),
    "referral-to-child-protection": (
        "referral",
        _referral_to(
            "conapina",
            service_category="CHILD_PROTECTION",
            subject_profile=profile(minor=True),
        ),
        # an adult referred to child protection gets nothing on the best-interest basis
        _referral_to("conapina", service_category="CHILD_PROTECTION"),
    ),
    "referral-to-shelter": (
        "referral",
        _referral_to("migobdt_dgpc", "HUMANITARIAN_SHELTER"),
        _referral_to("minsal", "HUMANITARIAN_SHELTER"),
    ),
    "referral-to-reintegration": (
        "referral",
        _referral_to("rree", "RECEPTION_ASSISTANCE"),
        _referral_to("rree"),
    ),
    "referral-to-international-partner": (
        "referral",
        _referral_to("io_acnur", "INTERNATIONAL_PARTNER_ASSISTANCE"),
        # an override counts for other services, never for a no-stream partner
        _referral_to("io_acnur", consent_overridden=True, override_reason="RISK_TO_LIFE"),
    ),
    "referral-to-justice-with-consent": (
        "referral",
        _referral_to("fgr", "ACCESS_TO_JUSTICE"),
        _referral_to("pnc", consent_overridden=True, override_reason="LEGAL_OBLIGATION"),
    ),
    "referral-revocation-notice": (
        "referral",
        _referral_to(
            "minsal",
            "HEALTH_CARE",
            lifecycle_event="REVOKED",
            status="REVOKED",
            revocation_reason="CONSENT_WITHDRAWN",
            consent=consent("HEALTH_CARE", withdrawn=True),
        ),
        # not revoked: the health rule serves minsal in full instead
        _referral_to(
            "minsal", "HEALTH_CARE", lifecycle_event="REVOKED", status="REVOKED"
        ),
    ),
    "rree_vmdmh-ref-sent": (
        "referral",
        {"payload.referring_institution_id": "rree_vmdmh"},
        {"payload.referring_institution_id": "rree"},
    ),
    "rree_vmdmh-ref-oversight": (
        "referral",
        {"payload.referring_institution_id": "dgme"},
        # its own referrals reach it in full through rree_vmdmh-ref-sent instead
        {"payload.referring_institution_id": "rree_vmdmh"},
    ),
    "hub_referrals-tracker": (
        "referral",
        {"payload.referring_institution_id": "dgme"},
        # between units of one institution: not the hub's to track
        {
            "payload.referring_institution_id": "minsal",
            "payload.receiving_institution_id": "minsal",
        },
    ),
    "hub_indicators-ra-counts": ("return_arrival", {}, None),
    "hub_indicators-bc-counts": ("border_crossing", {}, None),
    "hub_indicators-dr-counts": (
        "displacement_registration",
        {"payload.registration_status": "ACTIVE"},
        {"payload.registration_status": "CLOSED_DUPLICATE"},
    ),
    "hub_indicators-ref-counts": (
        "referral",
        {"payload.referring_institution_id": "dgme"},
        {
            "payload.referring_institution_id": "minsal",
            "payload.receiving_institution_id": "minsal",
        },
    ),
    "referral-expiry-to-receiving": ("referral", _EXPIRED, {}),
    "referral-expiry-to-referring": ("referral", _EXPIRED, {}),
    "referral-expiry-oversight": ("referral", _EXPIRED, {}),
    "referral_overdue-to-referring": (
        "referral_overdue",
        {"payload.referring_institution_id": "dgme"},
        # no stream: its supervisor hears instead
        {"payload.referring_institution_id": "pnc"},
    ),
    "referral_overdue-to-child-supervisor": (
        "referral_overdue",
        {"payload.supervising_institution_id": "conapina"},
        {"payload.supervising_institution_id": "rree_vmdmh"},
    ),
    "referral_overdue-to-oversight": (
        "referral_overdue",
        {"payload.supervising_institution_id": "rree_vmdmh"},
        {
            "payload.supervising_institution_id": "rree_vmdmh",
            "payload.service_group": "SPECIALISED_PROTECTION",
        },
    ),
    "referral_overdue-to-oversight-specialised": (
        "referral_overdue",
        {
            "payload.supervising_institution_id": "rree_vmdmh",
            "payload.service_group": "SPECIALISED_PROTECTION",
        },
        {"payload.supervising_institution_id": "rree_vmdmh"},
    ),
}


def _delivered(decisions: list[Decision], rule_id: str) -> bool:
    return any(d.rule_id == rule_id and d.delivered for d in decisions)


def test_every_rule_of_the_policy_has_a_matching_and_a_non_matching_case(
    policy: Policy,
) -> None:
    assert {rule.id for rule in policy.rules} == set(CASES)


@pytest.mark.parametrize("rule_id", sorted(CASES))
def test_a_rule_delivers_the_record_it_is_written_for(
    policy: Policy, catalog: Catalog, rule_id: str
) -> None:
    event_type, match, _ = CASES[rule_id]
    decisions = policy.decide(event_type, record(catalog, event_type, match))
    assert _delivered(decisions, rule_id), [
        (d.rule_id, d.withheld_reason) for d in decisions
    ]


@pytest.mark.parametrize(
    "rule_id", sorted(k for k, v in CASES.items() if v[2] is not None)
)
def test_a_rule_does_not_deliver_a_record_outside_it(
    policy: Policy, catalog: Catalog, rule_id: str
) -> None:
    event_type, _, miss = CASES[rule_id]
    assert miss is not None
    decisions = policy.decide(event_type, record(catalog, event_type, miss))
    assert not _delivered(decisions, rule_id)


def test_fgr_and_pnc_get_no_stream_of_any_event_type(
    policy: Policy, catalog: Catalog
) -> None:
    for member in ("fgr", "pnc"):
        assert not policy.institutions[member].stream
        assert all(r.recipient != member for r in policy.rules)
        assert policy.receive_rights.get(member, frozenset()) <= {"referral"}
        case_level = policy.rules_for(member)
        assert [r.id for r in case_level] == ["referral-to-justice-with-consent"]
        assert not case_level[0].consent_override


def test_a_referral_addressed_to_fgr_without_consent_is_withheld(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(catalog, "referral", _referral_to("fgr", "HEALTH_CARE"))
    decisions = [d for d in policy.decide("referral", datum) if d.recipient == "fgr"]
    assert [(d.delivered, d.withheld_reason) for d in decisions] == [
        (False, "consent_scope_missing")
    ]


def test_violence_displacement_location_reaches_only_mjsp_dnavmf(
    policy: Policy, catalog: Catalog
) -> None:
    datum = record(
        catalog,
        "displacement_registration",
        {"payload.composition": [{"sex": "MALE", "age_group": "AGE_0_4", "count": 1}]},
    )
    holders = {
        d.recipient
        for d in policy.decide("displacement_registration", datum)
        if d.delivered
        and "payload.current_location.department_code" in d.projection.field_paths
    }
    assert holders == {"mjsp_dnavmf"}


def test_every_rule_names_a_purpose_and_a_legal_basis(policy: Policy) -> None:
    for rule in policy.rules:
        assert rule.purpose
        assert rule.purpose != "OTHER"
        assert rule.legal_basis
        assert rule.legal_basis != "UNKNOWN"
