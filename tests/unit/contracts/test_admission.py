"""The admission check says exactly what the ledger's conversion of a value refuses."""

from __future__ import annotations

import re
import uuid
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts import admission, codec
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError
from services.contracts.natural import codec_for

EVENT_ID = "3f1c9a52-6a0e-4f55-9d7e-2b9f0c1d2e3f"

WANTED = "expected a UUID (lowercase, hyphenated)"


def _logical_fields(entry: SchemaEntry, record: str | None) -> dict[str, set[str]]:
    """Names of ``record``'s fields (the top record if None) by logical type."""
    fields = entry.schema["fields"]
    if record is not None:
        fields = next(f for f in fields if f["name"] == record)["type"]["fields"]
    found: dict[str, set[str]] = {}
    for field in fields:
        kind = field["type"]
        branches = kind if isinstance(kind, list) else [kind]
        for branch in branches:
            if isinstance(branch, dict) and "logicalType" in branch:
                found.setdefault(branch["logicalType"], set()).add(field["name"])
    return found


def test_the_envelope_fields_checked_are_every_logical_typed_envelope_field(
    catalog: Catalog,
) -> None:
    found = _logical_fields(catalog.get("return_arrival"), "envelope")
    assert found == {
        "uuid": set(admission.ENVELOPE_UUIDS),
        "timestamp-millis": set(admission.ENVELOPE_TIMESTAMPS),
        "date": set(admission.ENVELOPE_DATES),
    }


def test_the_entry_fields_checked_are_every_logical_typed_audit_entry_field(
    catalog: Catalog,
) -> None:
    found = _logical_fields(catalog.get("audit_entry", 1), None)
    assert found == {
        "uuid": set(admission.ENTRY_UUIDS),
        "timestamp-millis": set(admission.ENTRY_TIMESTAMPS),
    }


@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        (
            "event_id",
            "not-a-uuid",
            f"envelope.event_id: {WANTED}",
        ),
        ("event_id", "", f"envelope.event_id: {WANTED}"),
        (
            "correlation_id",
            "x" * 36,
            f"envelope.correlation_id: {WANTED}",
        ),
        (
            "causation_id",
            "12",
            f"envelope.causation_id: {WANTED}",
        ),
        ("occurred_at", 2**62, "envelope.occurred_at: expected a time in years 1"),
        ("recorded_at", -(2**62), "envelope.recorded_at: expected a time in years 1"),
        ("published_at", admission.MAX_TIMESTAMP_MS + 1, "envelope.published_at"),
        ("retention_until", 2**31 - 1, "envelope.retention_until: expected a date"),
    ],
)
def test_an_envelope_value_the_ledger_refuses_is_named_without_its_value(
    field: str, value: Any, message: str
) -> None:
    datum = {"envelope": {"event_id": EVENT_ID, field: value}}
    problem = admission.event_problem(datum)
    assert problem is not None
    assert problem.startswith(message)
    if isinstance(value, str) and value:
        assert value not in problem


def test_an_envelope_of_valid_and_absent_values_is_admitted() -> None:
    envelope = {
        "event_id": EVENT_ID,
        "correlation_id": EVENT_ID,
        "causation_id": None,
        "occurred_at": admission.MIN_TIMESTAMP_MS,
        "recorded_at": admission.MAX_TIMESTAMP_MS,
        "retention_until": admission.MAX_DATE_DAYS,
    }
    assert admission.event_problem({"envelope": envelope}) is None


def _entry_datum(catalog: Catalog) -> dict[str, Any]:
    natural = {
        "audit_id": EVENT_ID,
        "event_id": EVENT_ID,
        "event_type": "return_arrival",
        "source_institution_id": "dgme",
        "decided_at": "2025-03-01T12:00:00Z",
        "policy_version": "p1",
        "recipient_institution_id": "conapina",
        "decision": "delivered",
        "view": "FULL",
        "rule_id": "r1",
        "purpose": "CHILD_PROTECTION",
        "legal_basis": "LEGAL_MANDATE",
    }
    datum: dict[str, Any] = codec_for(catalog.get("audit_entry", 1)).to_plain_datum(
        natural
    )
    return datum


def _ledger_reads(catalog: Catalog, plain: dict[str, Any]) -> bool:
    """Whether the ledger's own conversion (logical read, natural JSON) succeeds."""
    entry = catalog.get("audit_entry", 1)
    value = codec.encode(entry, plain, plain=True)
    try:
        _, datum = codec.decode(catalog, value)
        codec_for(entry).to_natural(datum)
    except ContractError:
        return False
    return True


_UUID_TEXT = st.one_of(
    st.uuids().map(str),
    st.uuids().map(lambda u: u.hex.upper()),
    st.uuids().map(lambda u: f"urn:uuid:{u}"),
    st.text(alphabet="0123456789abcdefABCDEF-{}:urn _+ ", max_size=45),
    st.text(max_size=40),
)
_EDGE_MS = st.sampled_from(
    [
        admission.MIN_TIMESTAMP_MS - 1,
        admission.MIN_TIMESTAMP_MS,
        admission.MAX_TIMESTAMP_MS,
        admission.MAX_TIMESTAMP_MS + 1,
        2**63 - 1,
        -(2**63),
    ]
)


@given(
    event_id=_UUID_TEXT, decided_at=st.one_of(_EDGE_MS, st.integers(-(2**63), 2**63 - 1))
)
def test_what_is_admitted_the_ledger_reads_and_only_canonical_ids_are_admitted(
    catalog: Catalog, event_id: str, decided_at: int
) -> None:
    plain = _entry_datum(catalog) | {"event_id": event_id, "decided_at": decided_at}
    admitted = admission.entry_problem(plain) is None
    reads = _ledger_reads(catalog, plain)
    if admitted:
        assert reads
    # Stricter than the ledger only in the spelling of ids: one spelling per UUID,
    # so an event cannot pass de-duplication twice under two spellings.
    canonical = reads and str(uuid.UUID(event_id)) == event_id
    assert admitted == canonical


@pytest.mark.parametrize(
    "spelling",
    [
        EVENT_ID.upper(),
        "{" + EVENT_ID + "}",
        EVENT_ID.replace("-", ""),
        "urn:uuid:" + EVENT_ID,
    ],
)
def test_another_spelling_of_a_uuid_is_refused(spelling: str) -> None:
    problem = admission.event_problem({"envelope": {"event_id": spelling}})
    assert problem == f"envelope.event_id: {WANTED}"


def test_check_entry_raises_a_contract_error_naming_the_field(catalog: Catalog) -> None:
    plain = _entry_datum(catalog) | {"event_id": "nope"}
    with pytest.raises(
        admission.NotAdmissibleError,
        match=rf"^event_id: {re.escape(WANTED)}$",
    ):
        admission.check_entry(plain)
