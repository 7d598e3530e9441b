from __future__ import annotations

import uuid

from hypothesis import given
from hypothesis import strategies as st

from services.contracts import codec
from services.contracts.catalog import Catalog
from services.router.audit import AuditEncoder
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
    rule = (
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
