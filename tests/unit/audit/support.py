"""Synthetic audit entries and ledgers for the audit tests (no router needed)."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit import chain
from services.audit.checkpoints import sign
from services.audit.ledger import Ledger
from services.contracts import codec
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for

T0 = datetime(2025, 3, 1, 12, 0, tzinfo=UTC)
SUBJECT = "k1:" + "a" * 52
OTHER_SUBJECT = "k1:" + "b" * 52


def entry(
    event_id: uuid.UUID | None = None,
    recipient: str = "conapina",
    *,
    decision: str = "delivered",
    view: str = "FULL",
    event_type: str = "return_arrival",
    subject_key: str | None = SUBJECT,
    at: datetime = T0,
    rule_id: str = "ra_minors_conapina",
) -> dict[str, Any]:
    """An audit_entry datum as the router would produce it."""
    event_id = event_id or uuid.uuid4()
    return {
        "audit_id": uuid.uuid5(
            uuid.NAMESPACE_URL, f"{event_id}|{recipient}|{rule_id}|p1"
        ),
        "event_id": event_id,
        "event_type": event_type,
        "source_institution_id": "dgme",
        "recipient_institution_id": recipient,
        "decision": decision,
        "withheld_reason": None if decision == "delivered" else "consent_scope_missing",
        "view": view,
        "rule_id": rule_id,
        "purpose": "CHILD_PROTECTION",
        "legal_basis": "BEST_INTEREST_OF_CHILD",
        "disclosed_fields": ["envelope.event_id", "payload.person_profile.age"]
        if decision == "delivered"
        else [],
        "policy_version": "p1",
        "subject_key": subject_key,
        "decided_at": at,
    }


def encoded(catalog: Catalog, datum: dict[str, Any]) -> bytes:
    """The single-object bytes of an audit entry datum."""
    return codec.encode(catalog.get("audit_entry", 1), datum, check=True)


def prepared(catalog: Catalog, datum: dict[str, Any]) -> chain.Prepared:
    """The ledger-ready form of an audit entry datum."""
    entry_schema = catalog.get("audit_entry", 1)
    return chain.prepare(codec_for(entry_schema).to_natural(datum))


def many(count: int, start: datetime = T0) -> list[dict[str, Any]]:
    """``count`` entries a minute apart, alternating two recipients."""
    recipients = ("conapina", "minsal")
    return [
        entry(recipient=recipients[i % 2], at=start + timedelta(minutes=i))
        for i in range(count)
    ]


def filled_ledger(
    path: Path,
    catalog: Catalog,
    datums: Sequence[dict[str, Any]],
    key: Ed25519PrivateKey,
    checkpoint_at: Sequence[int] = (),
) -> Ledger:
    """A writer ledger holding ``datums``, with checkpoints after the given counts."""
    ledger = Ledger.open_writer(path)
    done = 0
    for stop in [*checkpoint_at, len(datums)]:
        batch = [prepared(catalog, d) for d in datums[done:stop]]
        ledger.append(batch, [], {("hub.audit", 0): stop})
        done = stop
        if stop in checkpoint_at:
            head = ledger.head()
            ledger.add_checkpoint(sign(key, ledger.ledger_id, head.seq, head.hash, T0))
    return ledger
