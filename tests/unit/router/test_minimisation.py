"""One test per leak an outside review reproduced (issue 13), through the pipeline.

Each routes a record with the shipped policy and reads the deliveries as their
recipients would: decoded bodies, CloudEvents headers and Kafka keys.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

import pytest

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog
from services.policy import Policy, SubjectKeys, load_policy
from services.policy import model as reasons
from services.router.pipeline import Accepted, Inbound, Limits, Output, Pipeline
from services.runtime.settings import REPO_ROOT
from tests.unit.policy.records import consent, profile, record

NOW = datetime(2026, 11, 3, tzinfo=UTC)
HUB_KEY = bytes(range(1, 33))


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    return load_policy(REPO_ROOT / "deploy" / "policy", catalog)


@pytest.fixture(scope="module")
def pipeline(catalog: Catalog, policy: Policy) -> Pipeline:
    limits = Limits(max_event_bytes=1 << 20, future_skew=timedelta(days=1))
    return Pipeline(catalog, policy, SubjectKeys(HUB_KEY), limits)


def _route(
    pipeline: Pipeline, catalog: Catalog, event_type: str, changes: dict[str, Any]
) -> list[Output]:
    datum = record(catalog, event_type, changes)
    entry = catalog.get(event_type)
    source = datum["envelope"]["source_institution_id"]
    inbound = Inbound(
        topics.inbound(source, event_type), 0, 1, None, codec.encode(entry, datum), 0
    )
    accepted = pipeline.inspect(inbound, NOW)
    assert isinstance(accepted, Accepted), accepted
    return pipeline.deliver(accepted, NOW)


def _delivered(outputs: list[Output]) -> dict[str, Output]:
    return {str(o.recipient): o for o in outputs if o.kind == "delivery"}


def _withheld(outputs: list[Output]) -> dict[str, str]:
    return {
        str(o.recipient): str(o.withheld)
        for o in outputs
        if o.kind == "audit" and o.withheld
    }


def _body(catalog: Catalog, output: Output) -> Any:
    return codec.decode(catalog, output.value)[1]


def _header(output: Output, name: str) -> str | None:
    return next((v.decode() for k, v in output.headers if k == name), None)


def _referral_from_isdemu() -> dict[str, Any]:
    return {
        "envelope.source_institution_id": "isdemu",
        "envelope.source_unit_id": "isdemu-ciudad-mujer-gbv-unit",
        "payload.referring_institution_id": "isdemu",
        "payload.referring_unit_id": "isdemu-ciudad-mujer-gbv-unit",
        "payload.receiving_institution_id": "minsal",
        "payload.service_category": "HEALTH_MEDICAL",
    }


# 1. Headers undo the projection -----------------------------------------------------


def test_a_pseudonymous_delivery_carries_the_cut_time_in_ce_time_too(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    outputs = _route(pipeline, catalog, "return_arrival", {})
    oversight = _delivered(outputs)["rree_vmdmh"]
    body = _body(catalog, oversight)
    assert body["envelope"]["occurred_at"] == datetime(2026, 11, 2, tzinfo=UTC)
    assert _header(oversight, "ce_time") == "2026-11-02T00:00:00.000Z"
    owner = _delivered(outputs)["dgme"]
    assert _header(owner, "ce_time") == "2026-11-02T14:05:07.123Z"


def test_the_oversight_view_never_names_a_sensitive_source_in_headers_or_body(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    outputs = _route(pipeline, catalog, "referral", _referral_from_isdemu())
    oversight = _delivered(outputs)["rree_vmdmh"]
    body = _body(catalog, oversight)
    assert _header(oversight, "ce_source") == "masked"
    assert body["envelope"]["source_institution_id"] == "masked"
    assert body["payload"]["referring_institution_id"] == "masked"
    assert "source_unit_id" not in body["envelope"]
    assert "isdemu" not in oversight.value.decode("latin-1")
    # the receiving service itself sees who referred
    assert _header(_delivered(outputs)["minsal"], "ce_source") == "isdemu"


# 2. The rule id reveals a withheld value ---------------------------------------------


def test_deliveries_name_view_purpose_and_basis_but_never_a_rule(
    pipeline: Pipeline, catalog: Catalog, policy: Policy
) -> None:
    outputs = _route(pipeline, catalog, "return_arrival", {})
    rule_ids = {r.id for r in policy.rules}
    for output in _delivered(outputs).values():
        names = [k for k, _ in output.headers]
        assert "puente_rule" not in names
        assert not {v.decode() for _, v in output.headers} & rule_ids
        assert _header(output, headers.PURPOSE)
        assert _header(output, headers.LEGAL_BASIS)
        assert _header(output, headers.POLICY_VERSION) == policy.version


def _unaccompanied_minor_refused(reason: str) -> dict[str, Any]:
    return {
        "envelope.event_id": "6f1c3f0e-3c7b-4d0c-9a3e-1e2f3a4b5c6d",
        "envelope.correlation_id": "7a2d4e6f-8091-4a2b-9c3d-4e5f60718293",
        "payload.traveller_profile": profile(minor=True),
        "payload.direction": "ENTRY",
        "payload.outcome": "REFUSED",
        "payload.refusal_reason": reason,
        "payload.minor_travel": {
            "accompanied_by": "UNACCOMPANIED",
            "authorization": "NONE_PRESENTED",
        },
    }


def test_a_migration_restriction_reaches_child_protection_exactly_as_another_refusal(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    restricted = _route(
        pipeline,
        catalog,
        "border_crossing",
        _unaccompanied_minor_refused("MIGRATION_RESTRICTION"),
    )
    other = _route(
        pipeline,
        catalog,
        "border_crossing",
        _unaccompanied_minor_refused("ENTRY_REQUIREMENTS_NOT_MET"),
    )
    first, second = _delivered(restricted)["conapina"], _delivered(other)["conapina"]
    assert _body(catalog, first)["payload"]["refusal_reason"] == "OTHER"
    assert (first.value, first.headers, first.key) == (
        second.value,
        second.headers,
        second.key,
    )
    alert = _route(
        pipeline,
        catalog,
        "border_crossing",
        _unaccompanied_minor_refused("MINOR_WITHOUT_REQUIRED_AUTHORIZATION"),
    )
    kept = _body(catalog, _delivered(alert)["conapina"])["payload"]["refusal_reason"]
    assert kept == "MINOR_WITHOUT_REQUIRED_AUTHORIZATION"


# 3. Pseudonymous recipients can join around the re-keyed subject key ----------------


def test_an_identifying_and_a_pseudonymous_recipient_hold_no_common_identifier(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "envelope.group_key": "household-77",
        "payload.medical_attention_required": True,
    }
    outputs = _route(pipeline, catalog, "return_arrival", changes)
    owner = _delivered(outputs)["dgme"]
    shared = {
        str(v)
        for v in (
            *(_body(catalog, owner)["envelope"][k] for k in ("event_id", "group_key")),
            _body(catalog, owner)["envelope"]["correlation_id"],
            _body(catalog, owner)["payload"]["arrival_id"],
            _body(catalog, owner)["envelope"]["subject_key"],
        )
    }
    for name in ("rree_vmdmh", "minsal"):
        pseudonymous = _delivered(outputs)[name]
        visible = pseudonymous.value.decode("latin-1") + "".join(
            v.decode() for _, v in pseudonymous.headers
        )
        visible += (pseudonymous.key or b"").decode()
        assert not [v for v in shared if v in visible], name
    rree, minsal = _delivered(outputs)["rree_vmdmh"], _delivered(outputs)["minsal"]
    assert _header(rree, "ce_id") != _header(minsal, "ce_id")
    assert rree.key != minsal.key


def test_a_recipients_own_event_id_is_stable_so_it_still_dedupes(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {"envelope.event_id": "0b0e4c55-8f9d-4f3a-b2a1-6a7b8c9d0e1f"}
    first = _delivered(_route(pipeline, catalog, "return_arrival", changes))
    again = _delivered(_route(pipeline, catalog, "return_arrival", changes))
    assert _header(first["rree_vmdmh"], "ce_id") == _header(again["rree_vmdmh"], "ce_id")
    body = _body(catalog, first["rree_vmdmh"])
    assert str(body["envelope"]["event_id"]) == _header(first["rree_vmdmh"], "ce_id")


def test_a_referrals_lifecycle_keeps_one_pseudonymous_id_per_recipient(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    referral = "3e1d2c3b-4a5f-4e6d-8c7b-9a0b1c2d3e4f"
    created = _route(pipeline, catalog, "referral", {"payload.referral_id": referral})
    accepted = _route(
        pipeline,
        catalog,
        "referral",
        {
            "payload.referral_id": referral,
            "envelope.source_institution_id": "minsal",
            "payload.lifecycle_event": "ACCEPTED",
            "payload.status": "ACCEPTED",
            "payload.previous_status": "SENT",
        },
    )
    ids = [
        _body(catalog, _delivered(o)["rree_vmdmh"])["payload"]["referral_id"]
        for o in (created, accepted)
    ]
    assert ids[0] == ids[1]
    assert str(ids[0]) != referral
    assert _delivered(created)["rree_vmdmh"].key == _delivered(accepted)["rree_vmdmh"].key
    assert _delivered(created)["minsal"].key == referral.encode()


# 4. Fields tagged too low -------------------------------------------------------------


def test_revealing_fields_of_a_return_stay_out_of_the_oversight_view(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    body = _body(
        catalog, _delivered(_route(pipeline, catalog, "return_arrival", {}))["rree_vmdmh"]
    )
    for name in ("immediate_services", "conveyance", "return_type"):
        assert name not in body["payload"], name
    for name in (
        "record_sensitivity",
        "subject_key_basis",
        "purposes",
        "source_unit_id",
        "source_record_id",
        "consent_ref",
    ):
        assert name not in body["envelope"], name
    assert "scopes" not in body["payload"]["consent"]


def test_child_protection_learns_no_shelter_unit_or_cause_of_a_displaced_household(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.composition": [
            {"sex": "FEMALE", "age_group": "AGE_30_59", "count": 1},
            {"sex": "MALE", "age_group": "AGE_5_11", "count": 1},
        ],
        "payload.members": [],
    }
    outputs = _route(pipeline, catalog, "displacement_registration", changes)
    body = _body(catalog, _delivered(outputs)["conapina"])
    for name in (
        "current_shelter_type",
        "shelter_id",
        "registering_unit_id",
        "cause_primary",
        "causes_secondary",
    ):
        assert name not in body["payload"], name


def test_the_referral_oversight_view_holds_no_unit_or_service_code(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    outputs = _route(pipeline, catalog, "referral", {"payload.service_code": "UCSF-7"})
    body = _body(catalog, _delivered(outputs)["rree_vmdmh"])
    for name in ("receiving_unit_id", "referring_unit_id", "service_code"):
        assert name not in body["payload"], name


# 5. Rules broader than their legal basis -----------------------------------------------


def test_an_adult_referred_to_child_protection_is_not_disclosed_on_the_childs_basis(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes: dict[str, Any] = {
        "payload.receiving_institution_id": "conapina",
        "payload.service_category": "CHILD_PROTECTION",
    }
    assert "conapina" not in _delivered(_route(pipeline, catalog, "referral", changes))
    changes["payload.subject_profile"] = profile(minor=True)
    assert "conapina" in _delivered(_route(pipeline, catalog, "referral", changes))


def test_justice_gets_a_consented_referral_without_protection_flags(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.receiving_institution_id": "fgr",
        "payload.service_category": "LEGAL_AID",
        "payload.protection_flags": ["CRIME_VICTIM_IN_TRANSIT"],
        "payload.consent": consent("ACCESS_TO_JUSTICE"),
    }
    body = _body(
        catalog, _delivered(_route(pipeline, catalog, "referral", changes))["fgr"]
    )
    assert "protection_flags" not in body["payload"]


def test_the_job_registry_gets_exactly_names_contact_department_and_profile(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.employment_profile.interested_in_job_placement": True,
        "payload.consent": consent("EMPLOYMENT_REINTEGRATION"),
    }
    body = _body(
        catalog, _delivered(_route(pipeline, catalog, "return_arrival", changes))["mtps"]
    )
    assert set(body["payload"]) == {
        "person_identity",
        "destination",
        "employment_profile",
    }
    assert set(body["payload"]["person_identity"]) == {
        "given_names",
        "family_names",
        "phone",
    }
    assert set(body["payload"]["destination"]) == {"department_code"}


# 6. Purpose and consent flags ---------------------------------------------------------


def test_a_rule_whose_purpose_the_record_does_not_declare_is_withheld(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "envelope.purposes": ["RECEPTION_ASSISTANCE", "POLICY_COORDINATION"],
        "payload.consent": consent("EMPLOYMENT_REINTEGRATION"),
    }
    outputs = _route(pipeline, catalog, "return_arrival", changes)
    assert _withheld(outputs)["rree_vmdmh"] == reasons.PURPOSE_NOT_DECLARED
    # the legal-mandate monitoring rule does not rest on declared purposes
    assert _header(_delivered(outputs)["rree_vmdmh"], headers.PURPOSE) == (
        "POLICY_COORDINATION"
    )


def test_no_disclosure_to_other_institutions_keeps_the_record_with_its_owner(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    no_disclosure = consent("EMPLOYMENT_REINTEGRATION", "HEALTH_CARE")
    no_disclosure["disclosure_to_other_institutions"] = False
    changes = {
        "payload.consent": no_disclosure,
        "payload.person_profile": profile(minor=True),
        "payload.medical_attention_required": True,
    }
    outputs = _route(pipeline, catalog, "return_arrival", changes)
    assert set(_delivered(outputs)) == {"dgme"}
    assert set(_withheld(outputs).values()) == {reasons.DISCLOSURE_NOT_ALLOWED}


def test_a_best_interest_override_does_not_deliver_an_adults_record(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.consent": consent(obtained=False),
        "payload.consent_overridden": True,
        "payload.override_reason": "BEST_INTEREST_OF_CHILD",
    }
    outputs = _route(pipeline, catalog, "referral", changes)
    assert "minsal" not in _delivered(outputs)
    assert _withheld(outputs)["minsal"] == reasons.OVERRIDE_NOT_APPLICABLE
    changes["payload.subject_profile"] = profile(minor=True)
    assert "minsal" in _delivered(_route(pipeline, catalog, "referral", changes))


def test_withdrawn_consent_blocks_all_but_a_legal_mandate(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.consent": consent("HEALTH_CARE", withdrawn=True),
        "payload.consent_overridden": True,
        "payload.override_reason": "RISK_TO_LIFE",
    }
    outputs = _route(pipeline, catalog, "referral", changes)
    assert _withheld(outputs)["minsal"] == reasons.CONSENT_WITHDRAWN
    # their legal mandates: the Vice Ministry's oversight, the hub's referral tracker
    # and its indicators (official statistics)
    assert set(_delivered(outputs)) == {"rree_vmdmh", "hub_referrals", "hub_indicators"}


def test_values_revealing_gender_based_violence_escalate_the_record(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {"payload.protection_flags": ["GBV_SURVIVOR"]}
    outputs = _route(pipeline, catalog, "return_arrival", changes)
    assert _withheld(outputs)["rree_vmdmh"] == reasons.ESCALATED_SENSITIVITY
    assert "dgme" in _delivered(outputs)  # FULL views already carry such values


def test_every_withheld_decision_is_an_audit_entry_without_fields(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {"payload.protection_flags": ["GBV_SURVIVOR"]}
    outputs = _route(pipeline, catalog, "return_arrival", changes)
    [entry] = [
        o
        for o in outputs
        if o.recipient == "rree_vmdmh" and o.withheld == reasons.ESCALATED_SENSITIVITY
    ]
    _, datum = codec.decode(catalog, entry.value)
    assert datum["decision"] == "withheld"
    assert datum["withheld_reason"] == reasons.ESCALATED_SENSITIVITY
    assert datum["disclosed_fields"] == []
    assert entry.event_type == "return_arrival"


def test_consent_to_victim_assistance_does_not_reach_the_police(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.receiving_institution_id": "pnc",
        "payload.service_category": "LEGAL_AID",
        "payload.consent": consent("VICTIM_ASSISTANCE", "LEGAL_AID"),
    }
    outputs = _route(pipeline, catalog, "referral", changes)
    assert "pnc" not in _delivered(outputs)
    assert _withheld(outputs)["pnc"] == reasons.CONSENT_SCOPE_MISSING


def test_consent_to_reception_does_not_reach_an_international_partner(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    changes = {
        "payload.receiving_institution_id": "io_acnur",
        "payload.consent": consent("RECEPTION_ASSISTANCE"),
    }
    outputs = _route(pipeline, catalog, "referral", changes)
    assert _withheld(outputs)["io_acnur"] == reasons.CONSENT_SCOPE_MISSING
    changes["payload.consent"] = consent("INTERNATIONAL_PARTNER_ASSISTANCE")
    assert "io_acnur" in _delivered(_route(pipeline, catalog, "referral", changes))
