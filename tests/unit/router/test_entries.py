from __future__ import annotations

import copy
import uuid

import pytest
from hypothesis import given
from hypothesis import strategies as st

from services.contracts import codec
from services.contracts.catalog import Catalog, SchemaEntry, make_entry
from services.contracts.errors import SchemaCatalogError
from services.router.entries import AuditEncoder, RuleOutcome
from services.runtime.settings import REPO_ROOT

CATALOG = Catalog.load(REPO_ROOT / "schemas")
ENTRY = CATALOG.get("audit_entry")
ENCODER = AuditEncoder(ENTRY)
texts = st.text(max_size=30)
ids = st.uuids().map(str)


@given(
    audit_id=ids,
    event_id=ids,
    event_type=texts,
    source=texts,
    subject_key=st.none() | texts,
    decided_at=st.integers(0, 2**47),
    recipient=texts,
    delivered=st.booleans(),
    reason=st.none() | texts,
    view=st.sampled_from(["FULL", "IDENT", "PSEUDO_S", "PSEUDO"]),
    rule_id=texts,
    purpose=st.sampled_from(["CHILD_PROTECTION", "HEALTH_CARE", "OTHER"]),
    basis=st.sampled_from(["CONSENT", "LEGAL_MANDATE"]),
    fields=st.lists(texts, max_size=70).map(tuple),
)
def test_segmented_audit_entries_equal_whole_record_encoding(
    audit_id: str,
    event_id: str,
    event_type: str,
    source: str,
    subject_key: str | None,
    decided_at: int,
    recipient: str,
    delivered: bool,
    reason: str | None,
    view: str,
    rule_id: str,
    purpose: str,
    basis: str,
    fields: tuple[str, ...],
) -> None:
    decision = "delivered" if delivered else "withheld"
    event_part = ENCODER.event_part(event_id, event_type, source, subject_key, decided_at)
    rule = RuleOutcome(
        "sha256:x",
        recipient,
        decision,
        reason,
        view,
        rule_id,
        purpose,
        basis,
        fields,
    )
    whole = {
        "audit_id": audit_id,
        "event_id": event_id,
        "event_type": event_type,
        "source_institution_id": source,
        "subject_key": subject_key,
        "decided_at": decided_at,
        "policy_version": "sha256:x",
        "recipient_institution_id": recipient,
        "decision": decision,
        "withheld_reason": reason,
        "view": view,
        "rule_id": rule_id,
        "purpose": purpose,
        "legal_basis": basis,
        "disclosed_fields": list(fields),
    }
    segmented = ENCODER.encode(audit_id, event_part, rule)
    assert segmented == ENCODER.encode(audit_id, event_part, rule)  # cached tail too
    assert segmented == codec.encode(ENTRY, whole, plain=True)
    _, decoded = codec.decode(CATALOG, segmented)
    assert decoded["audit_id"] == uuid.UUID(audit_id)
    assert decoded["disclosed_fields"] == list(fields)


def reordered(entry: SchemaEntry, order: list[int]) -> SchemaEntry:
    schema = copy.deepcopy(entry.schema)
    schema["fields"] = [schema["fields"][i] for i in order]
    return make_entry(entry.name, entry.version, schema)


def test_each_part_takes_its_fields_in_the_schemas_order() -> None:
    # The rule outcome's fields reversed: the encoder follows the schema.
    order = [*range(6), *reversed(range(6, len(ENTRY.schema["fields"])))]
    entry = reordered(ENTRY, order)
    encoder = AuditEncoder(entry)
    rule = RuleOutcome(
        "sha256:x", "minsal", "delivered", None, "PSEUDO", "r1", "OTHER", "CONSENT",
        ("payload.a", "payload.b"),
    )  # fmt: skip
    audit_id, event_id = str(uuid.uuid4()), str(uuid.uuid4())
    whole = {
        "audit_id": audit_id,
        "event_id": event_id,
        "event_type": "return_arrival",
        "source_institution_id": "dgme",
        "subject_key": None,
        "decided_at": 1_700_000_000_000,
        **rule._asdict(),
        "disclosed_fields": ["payload.a", "payload.b"],
    }

    event_part = encoder.event_part(
        event_id, "return_arrival", "dgme", None, 1_700_000_000_000
    )

    assert encoder.encode(audit_id, event_part, rule) == codec.encode(
        entry, whole, plain=True
    )


@pytest.mark.parametrize(
    "order",
    [
        [1, 0, *range(2, 15)],  # audit_id no longer first
        [0, 1, 2, 3, 4, 6, 5, *range(7, 15)],  # a rule field among the event's
    ],
)
def test_an_entry_schema_the_two_parts_cannot_write_is_refused(order: list[int]) -> None:
    with pytest.raises(SchemaCatalogError, match="audit_id"):
        AuditEncoder(reordered(ENTRY, order))
