"""The three questions the ledger answers, for the CLI and the HTTP API alike.

Rows are found through the indexed columns; what is returned is read from each
entry's canonical bytes, the part the hash chain protects.
"""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Final

from pydantic import BaseModel

from services.audit.chain import parse_canonical
from services.audit.ledger import Ledger
from services.contracts.errors import ContractError
from services.contracts.ids import check_institution_id
from services.contracts.natural import format_timestamp

DEFAULT_LIMIT: Final = 1000
_MAX_SUBJECT_KEY: Final = 128
_DELIVERED: Final = "delivered"


class QueryError(ContractError):
    """A query argument is malformed (not a uuid, an unknown id form, bad times)."""


class Disclosure(BaseModel):
    """One decision as recorded in the ledger."""

    seq: int
    audit_id: str
    event_id: str
    event_type: str
    source_institution_id: str
    recipient_institution_id: str
    decision: str
    withheld_reason: str | None = None
    view: str
    rule_id: str
    purpose: str
    legal_basis: str
    disclosed_fields: list[str]
    policy_version: str
    subject_key: str | None = None
    decided_at: str


class EventRecipients(BaseModel):
    """Who received one event, and every decision taken on it."""

    event_id: str
    recipients: list[str]
    decisions: list[Disclosure]


class Count(BaseModel):
    """Deliveries of one event type in one view."""

    event_type: str
    view: str
    count: int


class InstitutionReceived(BaseModel):
    """What one institution received in ``[since, until)``."""

    institution: str
    since: str | None
    until: str | None
    total: int
    counts: list[Count]
    entries: list[Disclosure]
    truncated: bool


class InstitutionSummary(BaseModel):
    """How often and when one institution received data about a subject."""

    institution: str
    deliveries: int
    first: str
    last: str


class SubjectReport(BaseModel):
    """Every institution that received data about one subject key."""

    subject_key: str
    institutions: list[InstitutionSummary]
    disclosures: list[Disclosure]


def who_received(ledger: Ledger, event_id: str) -> EventRecipients:
    """Every decision on ``event_id``; ``recipients`` are those delivered to."""
    key = _event_id(event_id)
    decisions = _disclosures(
        ledger.select(
            "SELECT seq, entry FROM entries WHERE event_id = ? ORDER BY seq", (key,)
        )
    )
    recipients = sorted(
        {d.recipient_institution_id for d in decisions if d.decision == _DELIVERED}
    )
    return EventRecipients(event_id=key, recipients=recipients, decisions=decisions)


def received(
    ledger: Ledger,
    institution: str,
    since: datetime | None = None,
    until: datetime | None = None,
    limit: int = DEFAULT_LIMIT,
) -> InstitutionReceived:
    """What ``institution`` was delivered in ``[since, until)``: counts and entries."""
    check_institution_id(institution)
    low, high = _window(since, until)
    # Both reads stop at one head, so counts and entries agree while ingestion goes on.
    head = ledger.select("SELECT coalesce(max(seq), 0) FROM entries")[0][0]
    where = (
        "recipient = ? AND decision = ? AND decided_at >= ? AND decided_at < ? "
        "AND seq <= ?"
    )
    args = (institution, _DELIVERED, low or "", high or "\uffff", head)
    counts = [
        Count(event_type=t, view=v, count=n)
        for t, v, n in ledger.select(
            f"SELECT event_type, view, count(*) FROM entries WHERE {where} "  # noqa: S608 - fixed fragments
            "GROUP BY event_type, view ORDER BY event_type, view",
            args,
        )
    ]
    entries = _disclosures(
        ledger.select(
            f"SELECT seq, entry FROM entries WHERE {where} ORDER BY seq LIMIT ?",  # noqa: S608 - fixed fragments
            (*args, limit),
        )
    )
    total = sum(c.count for c in counts)
    return InstitutionReceived(
        institution=institution,
        since=low,
        until=high,
        total=total,
        counts=counts,
        entries=entries,
        truncated=total > len(entries),
    )


def subject_report(ledger: Ledger, subject_key: str) -> SubjectReport:
    """Every delivery of data about ``subject_key`` (the hub key, not a re-keyed one)."""
    if not subject_key or len(subject_key) > _MAX_SUBJECT_KEY:
        raise QueryError(f"a subject key has 1 to {_MAX_SUBJECT_KEY} characters")
    disclosures = _disclosures(
        ledger.select(
            "SELECT seq, entry FROM entries WHERE subject_key = ? AND decision = ? "
            "ORDER BY seq",
            (subject_key, _DELIVERED),
        )
    )
    by_institution: dict[str, list[Disclosure]] = {}
    for d in disclosures:
        by_institution.setdefault(d.recipient_institution_id, []).append(d)
    summaries = [
        InstitutionSummary(
            institution=name,
            deliveries=len(items),
            first=min(d.decided_at for d in items),
            last=max(d.decided_at for d in items),
        )
        for name, items in sorted(by_institution.items())
    ]
    return SubjectReport(
        subject_key=subject_key, institutions=summaries, disclosures=disclosures
    )


def _disclosures(rows: Any) -> list[Disclosure]:
    return [Disclosure(seq=seq, **parse_canonical(bytes(entry))) for seq, entry in rows]


def _event_id(value: str) -> str:
    try:
        return str(uuid.UUID(value))
    except ValueError as e:
        raise QueryError("an event id is a UUID, e.g. 9b2f5c1e-...") from e


def _window(
    since: datetime | None, until: datetime | None
) -> tuple[str | None, str | None]:
    for value in (since, until):
        if value is not None and value.tzinfo is None:
            raise QueryError("times need an offset, e.g. 2025-03-01T00:00:00Z")
    if since is not None and until is not None and since >= until:
        raise QueryError("--since must be before --until")
    return (
        format_timestamp(since) if since else None,
        format_timestamp(until) if until else None,
    )
