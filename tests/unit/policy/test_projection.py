"""Projection to views: kept fields, projected schemas, generalisations, extras."""

from __future__ import annotations

import copy
from datetime import UTC, datetime
from typing import Any

import pytest

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.policy import Policy, PolicyError
from services.policy import projection as proj
from services.policy.loader import tree_of
from tests.unit.policy.records import consent, ids, record


def _build(
    catalog: Catalog, event_type: str, view: proj.View, **extras: Any
) -> proj.Projection:
    entry = catalog.get(event_type)
    return proj.build(entry, tree_of(entry), f"test.{event_type}.{view}", view, **extras)


def _names(value: Any) -> Any:
    """The nested field names of a datum (its shape without its values)."""
    if isinstance(value, dict):
        return {k: _names(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_names(v) for v in value]
    return None


def _field_names(schema: Any) -> list[str]:
    return [f["name"] for f in schema["fields"]]


def _sub(schema: Any, name: str) -> Any:
    [field] = [f for f in schema["fields"] if f["name"] == name]
    kind = field["type"]
    if isinstance(kind, list):
        [kind] = [b for b in kind if b != "null"]
    return kind


def test_pseudo_keeps_only_internal_and_quasi_fields_and_generalises(
    catalog: Catalog,
) -> None:
    datum = record(catalog, "return_arrival", {"payload.consent": consent("HEALTH_CARE")})
    out = _build(catalog, "return_arrival", "PSEUDO").apply(datum, "r1:abc", ids)
    payload = out["payload"]
    for dropped in (
        "person_identity",
        "accompaniment",
        "migration_reasons",
        "protection_flags",
    ):
        assert dropped not in payload
    assert "age_years" not in payload["person_profile"]
    assert payload["person_profile"]["age_group"] == "AGE_30_59"
    assert set(payload["destination"]) == {"department_code", "municipality_code"}
    assert out["envelope"]["subject_key"] == "r1:abc"
    assert out["envelope"]["occurred_at"] == datetime(2026, 11, 2, tzinfo=UTC)
    assert payload["consent"]["given_at"] == datetime(2026, 11, 2, tzinfo=UTC)


def test_ident_keeps_direct_identifiers_and_drops_sensitive_ones(
    catalog: Catalog,
) -> None:
    datum = record(catalog, "return_arrival")
    out = _build(catalog, "return_arrival", "IDENT").apply(datum, "k1:abc", ids)
    payload = out["payload"]
    assert payload["person_identity"]["documents"][0]["document_number"] == "01234567-8"
    assert payload["destination"]["locality"] == "Colonia Centro"
    assert payload["person_profile"]["age_years"] == 34
    for dropped in ("accompaniment", "migration_reasons", "protection_flags"):
        assert dropped not in payload
    assert out["envelope"]["occurred_at"] == datum["envelope"]["occurred_at"]


def test_pseudo_s_keeps_sensitive_fields_but_no_identity(catalog: Catalog) -> None:
    datum = record(catalog, "return_arrival")
    out = _build(catalog, "return_arrival", "PSEUDO_S").apply(datum, "r1:abc", ids)
    payload = out["payload"]
    assert payload["migration_reasons"] == ["ECONOMIC"]
    assert payload["person_profile"]["age_years"] == 34
    assert "person_identity" not in payload
    assert "protection_flags" not in payload
    assert "locality" not in payload["destination"]


def test_a_field_whose_parent_is_dropped_is_dropped_whatever_its_own_tag(
    catalog: Catalog,
) -> None:
    # IdentityDocument.document_type is QUASI but sits under a DIRECT record.
    paths = _build(catalog, "return_arrival", "PSEUDO").field_paths
    assert not [p for p in paths if p.startswith("payload.person_identity")]


def test_a_grant_adds_one_field_with_its_parents_as_containers(catalog: Catalog) -> None:
    projection = _build(
        catalog, "return_arrival", "PSEUDO", grants=("payload.person_identity.phone",)
    )
    identity = _sub(_sub(projection.entry.schema, "payload"), "person_identity")
    assert _field_names(identity) == ["phone"]
    out = projection.apply(record(catalog, "return_arrival"), None, ids)
    assert out["payload"]["person_identity"] == {"phone": "+50370000000"}
    no_identity = record(catalog, "return_arrival", {"payload.person_identity": None})
    assert projection.apply(no_identity, None, ids)["payload"]["person_identity"] is None


def test_a_removal_wins_over_the_view(catalog: Catalog) -> None:
    projection = _build(
        catalog, "return_arrival", "FULL", removes=("payload.person_identity.documents",)
    )
    out = projection.apply(record(catalog, "return_arrival"), "k1:x")
    assert "documents" not in out["payload"]["person_identity"]
    assert (
        "payload.person_identity.documents.document_number" not in projection.field_paths
    )
    assert projection.entry.name == "test.return_arrival.FULL"


def test_a_plain_full_view_uses_the_event_schema_itself(catalog: Catalog) -> None:
    entry = catalog.get("border_crossing")
    assert _build(catalog, "border_crossing", "FULL").entry is entry


def test_full_data_resolves_to_the_projected_schema_as_reader(catalog: Catalog) -> None:
    for event_type in ("return_arrival", "referral", "displacement_registration"):
        datum = record(catalog, event_type)
        full = catalog.get(event_type)
        data = codec.encode(full, datum)
        for view in ("IDENT", "PSEUDO_S"):
            projection = _build(catalog, event_type, view)
            resolved = codec.read_body(full, data, reader=projection.entry)
            expected = projection.apply(datum, datum["envelope"]["subject_key"], ids)
            if event_type == "referral":
                expected["payload"]["service_group"] = datum["payload"]["service_group"]
            if view == "IDENT":
                assert resolved == expected, (event_type, view)
            else:  # re-keyed ids and cut times: the same fields, other values
                assert _names(resolved) == _names(expected), (event_type, view)


def test_a_projected_datum_encodes_with_its_projected_schema(catalog: Catalog) -> None:
    for event_type in (
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    ):
        datum = record(catalog, event_type)
        for view in proj.VIEWS:
            projection = _build(catalog, event_type, view)
            data = codec.encode(projection.entry, projection.apply(datum, "r1:k", ids))
            assert (
                codec.read_body(projection.entry, data)["envelope"]["subject_key"]
                == "r1:k"
            )


def test_projection_does_not_change_the_input_record(catalog: Catalog) -> None:
    datum = record(catalog, "referral", {"payload.service_category": "GBV_SPECIALISED"})
    before = copy.deepcopy(datum)
    for view in proj.VIEWS:
        _build(catalog, "referral", view).apply(datum, "r1:k", ids)
    assert datum == before


def test_optional_fields_stay_optional_and_required_ones_dropped_vanish(
    catalog: Catalog,
) -> None:
    payload = _sub(_build(catalog, "return_arrival", "IDENT").entry.schema, "payload")
    [identity] = [f for f in payload["fields"] if f["name"] == "person_identity"]
    assert identity["type"][0] == "null"
    assert identity["default"] is None
    pseudo = _sub(_build(catalog, "return_arrival", "PSEUDO").entry.schema, "payload")
    assert "person_identity" not in _field_names(pseudo)
    assert "age_years" not in _field_names(_sub(pseudo, "person_profile"))


def test_projected_schemas_keep_record_names_and_sensitivity(catalog: Catalog) -> None:
    schema = _build(catalog, "return_arrival", "PSEUDO").entry.schema
    assert (schema["namespace"], schema["name"]) == (
        "sv.mcnmh.hub",
        "ReturnArrivalRecorded",
    )
    assert all("sensitivity" in f for f in schema["fields"])


def test_projected_schemas_are_deterministic(catalog: Catalog) -> None:
    first = _build(
        catalog, "displacement_registration", "PSEUDO_S", removes=("payload.shelter_id",)
    )
    second = _build(
        catalog, "displacement_registration", "PSEUDO_S", removes=("payload.shelter_id",)
    )
    assert first.entry.fingerprint == second.entry.fingerprint
    assert first.entry.schema == second.entry.schema
    assert first.field_paths == second.field_paths


def test_a_record_type_used_twice_must_be_projected_alike(catalog: Catalog) -> None:
    # LocationSV is both origin and current_location of a displacement.
    with pytest.raises(PolicyError, match="LocationSV would be projected differently"):
        _build(
            catalog,
            "displacement_registration",
            "FULL",
            removes=("payload.origin.locality",),
        )


def test_the_policy_registers_its_projected_schemas_in_the_catalog(
    policy: Policy, catalog: Catalog
) -> None:
    pseudo = catalog.get("referral.PSEUDO")
    assert catalog.by_fingerprint(pseudo.fingerprint).canonical == pseudo.canonical
    [rule] = [r for r in policy.rules if r.id == "rree_vmdmh-ra-employment"]
    for version, projection in rule.projections.items():
        name = "return_arrival.rule.rree_vmdmh-ra-employment"
        assert projection.entry is catalog.get(name, version)
    projection = rule.latest
    assert "payload.person_identity.phone" in projection.field_paths


def test_pseudo_referrals_mask_who_serves_specialised_protection(
    catalog: Catalog,
) -> None:
    gbv = record(
        catalog,
        "referral",
        {
            "payload.receiving_institution_id": "isdemu",
            "payload.service_category": "GBV_SPECIALISED",
            "payload.consent": consent("VICTIM_ASSISTANCE"),
        },
    )
    out = _build(catalog, "referral", "PSEUDO").apply(gbv, "r1:k", ids)["payload"]
    assert out["receiving_institution_id"] == proj.MASKED_INSTITUTION
    assert "receiving_unit_id" not in out  # highly sensitive: FULL views only
    assert out["service_group"] == "SPECIALISED_PROTECTION"
    assert "service_category" not in out
    full = _build(catalog, "referral", "FULL").apply(gbv, "k1:k")["payload"]
    assert full["receiving_institution_id"] == "isdemu"
    assert full["service_group"] == "SPECIALISED_PROTECTION"


def test_pseudo_referrals_to_other_services_keep_their_recipient(
    catalog: Catalog,
) -> None:
    health = record(catalog, "referral")
    out = _build(catalog, "referral", "PSEUDO").apply(health, "r1:k", ids)["payload"]
    assert out["receiving_institution_id"] == "minsal"
    assert out["service_group"] == "HEALTH"


def test_field_paths_list_leaves_through_arrays(catalog: Catalog) -> None:
    paths = _build(catalog, "displacement_registration", "FULL").field_paths
    assert "payload.members.identity.documents.document_number" in paths
    assert "payload.composition.count" in paths
    assert "payload.members" not in paths


def test_the_policys_schemas_are_every_source_and_projected_schema_once(
    policy: Policy,
) -> None:
    projections = [p for r in policy.rules for p in r.projections.values()]
    wanted = {p.source.fingerprint for p in projections}
    wanted |= {p.entry.fingerprint for p in projections}
    fingerprints = [e.fingerprint for e in policy.schemas()]
    assert sorted(fingerprints) == sorted(wanted)  # each once: no repeats
    assert set(EVENT_TYPES) <= {e.name for e in policy.schemas()}
