"""The router's per-record decisions, with a stand-in policy (pure, no broker)."""

from __future__ import annotations

import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.router.pipeline import (
    AUDIT_NAMESPACE,
    Accepted,
    Inbound,
    Pipeline,
    Rejected,
    audit_uuid,
)
from tests.samples import minimal
from tests.unit.router.standins import NOW, record


def raw(topic: str, value: bytes) -> Inbound:
    return Inbound(topic, 1, 3, None, value, 1_700_000_000_000)


def rejected(pipeline: Pipeline, inbound: Inbound) -> Rejected:
    result = pipeline.inspect(inbound, NOW)
    assert isinstance(result, Rejected)
    return result


def test_a_valid_event_is_accepted(pipeline: Pipeline, catalog: Catalog) -> None:
    result = pipeline.inspect(record(catalog, "hub.in.dgme.return_arrival"), NOW)
    assert isinstance(result, Accepted)
    assert (result.source, result.event_type) == ("dgme", "return_arrival")


@pytest.mark.parametrize(
    ("value", "reason"),
    [
        (b"", "undecodable"),
        (b"garbage that is not avro", "undecodable"),
        (b"\xc3\x01" + bytes(8), "unknown_schema"),
        (b"\xc3\x01\x01", "undecodable"),
        (b"x" * 5000, "too_large"),
    ],
)
def test_each_undecodable_input_gets_its_reason(
    pipeline: Pipeline, value: bytes, reason: str
) -> None:
    result = rejected(pipeline, raw("hub.in.dgme.return_arrival", value))
    assert result.reason == reason
    assert result.source == "dgme"


def test_an_envelope_naming_another_source_is_a_source_mismatch(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    result = rejected(pipeline, record(catalog, "hub.in.minsal.return_arrival"))
    assert result.reason == "source_mismatch"
    assert result.source == "minsal"


def test_a_source_without_the_publish_right_is_refused(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    entry = catalog.get("return_arrival")
    natural = minimal(entry, source_institution_id="minsal")
    value = codec.encode(entry, codec_for(entry).to_datum(natural))
    result = rejected(pipeline, raw("hub.in.minsal.return_arrival", value))
    assert result.reason == "not_allowed_to_publish"


def test_an_event_from_the_future_is_invalid(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    future = "2026-11-03T15:00:00Z"
    inbound = record(
        catalog, "hub.in.dgme.return_arrival", occurred_at=future, recorded_at=future
    )
    result = rejected(pipeline, inbound)
    assert result.reason == "invalid"
    assert "future" in result.message


def test_a_record_on_another_event_types_topic_is_invalid(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    result = rejected(pipeline, record(catalog, "hub.in.dgme.referral"))
    assert result.reason == "invalid"


def test_an_unknown_event_type_topic_is_an_unknown_schema(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    result = rejected(pipeline, record(catalog, "hub.in.dgme.weather"))
    assert result.reason == "unknown_schema"


def test_deliveries_carry_view_rule_and_rekeyed_subject_keys(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    accepted = pipeline.inspect(record(catalog, "hub.in.dgme.return_arrival"), NOW)
    assert isinstance(accepted, Accepted)
    outputs = pipeline.deliver(accepted, NOW)
    deliveries = [o for o in outputs if o.kind == "delivery"]
    audits = [o for o in outputs if o.kind == "audit"]
    assert [o.topic for o in deliveries] == [
        "hub.out.conapina.return_arrival",
        "hub.out.minsal.return_arrival",
    ]
    assert len(audits) == 3  # one per decision, the withheld one included
    keys = {}
    for output in deliveries:
        headers = dict(output.headers)
        assert headers["puente_policy_version"] == b"sha256:test"
        _, datum = codec.decode(catalog, output.value)
        keys[headers["puente_view"].decode()] = datum["envelope"]["subject_key"]
    assert keys == {"FULL": "k1:hub", "PSEUDO": "k1:hub:minsal"}


def test_audit_entries_are_deterministic_per_decision(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    inbound = record(catalog, "hub.in.dgme.return_arrival")
    first = pipeline.inspect(inbound, NOW)
    again = pipeline.inspect(inbound, NOW)
    assert isinstance(first, Accepted)
    assert isinstance(again, Accepted)
    ids = [
        [
            codec.decode(catalog, o.value)[1]["audit_id"]
            for o in outputs
            if o.kind == "audit"
        ]
        for outputs in (pipeline.deliver(first, NOW), pipeline.deliver(again, NOW))
    ]
    assert ids[0] == ids[1]
    _, withheld = codec.decode(catalog, pipeline.deliver(first, NOW)[-1].value)
    assert (withheld["decision"], withheld["withheld_reason"]) == (
        "withheld",
        "consent_scope_missing",
    )
    assert withheld["disclosed_fields"] == []


def test_a_rejection_returns_the_original_bytes_and_position(
    pipeline: Pipeline, catalog: Catalog
) -> None:
    inbound = raw("hub.in.dgme.return_arrival", b"garbage")
    output = pipeline.reject(rejected(pipeline, inbound), NOW)
    assert output.topic == "hub.rejected.dgme"
    entry, datum = codec.decode(catalog, output.value)
    assert entry.name == "rejection"
    assert (datum["reason"], datum["original_offset"], datum["original_value"]) == (
        "undecodable",
        3,
        b"garbage",
    )


@given(st.text(max_size=80))
def test_audit_ids_are_the_uuid5_of_their_name(name: str) -> None:
    assert audit_uuid(name) == str(uuid.uuid5(AUDIT_NAMESPACE, name))
