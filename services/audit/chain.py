"""The hash chain of the disclosure ledger, pure: canonical bytes, links, columns.

**Canonical bytes of an entry.** The UTF-8 bytes of the RFC 8785 (JSON
Canonicalization Scheme) serialisation of the entry's *natural JSON* (docs/contracts.md)
as decoded with its writer schema (``audit_entry`` v1), every field present:

- ``audit_id`` and ``event_id`` as lowercase hyphenated UUID strings;
- ``decided_at`` as RFC 3339 in UTC with milliseconds and ``Z``
  (``2025-03-01T14:05:09.120Z``);
- enums (``decision``, ``view``, ``purpose``, ``legal_basis``) as their symbols;
- ``withheld_reason`` and ``subject_key`` as ``null`` when absent;
- ``disclosed_fields`` as an array of field paths in the router's order.

RFC 8785 sorts object keys and writes no insignificant whitespace; the entries
hold no floating-point numbers, so any JSON library that sorts keys, writes
compact separators and does not escape non-ASCII text produces the same bytes.

**Chain.** Entries are numbered ``seq = 1, 2, ...`` in ledger order and
``hash_n = SHA-256(hash_{n-1} || canonical_n)`` over the raw 32-byte digest
followed by the canonical bytes, with ``hash_0`` = 32 zero bytes.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Final

import rfc8785

from services.contracts.catalog import SchemaEntry
from services.contracts.errors import ContractError

GENESIS: Final = bytes(32)
ENTRY_SCHEMA: Final = "audit_entry"
# The ledger keeps pseudonymous keys and field paths only, never personal data:
# an audit record whose schema tags any field above these is refused.
ADMISSIBLE_SENSITIVITY: Final = frozenset({"INTERNAL", "QUASI_IDENTIFIER"})


class NotAnAuditEntryError(ContractError):
    """A record on the audit topic is not an admissible ``audit_entry``."""


@dataclass(frozen=True, slots=True)
class Columns:
    """The indexed query columns of one entry, all derived from its canonical bytes."""

    audit_id: str
    event_id: str
    event_type: str
    recipient: str
    decision: str
    view: str
    subject_key: str | None
    decided_at: str


@dataclass(frozen=True, slots=True)
class Prepared:
    """An entry ready to append: its canonical bytes and query columns."""

    canonical: bytes
    columns: Columns


def check_admissible(entry: SchemaEntry) -> None:
    """Raise unless ``entry`` is an audit_entry schema holding no personal data."""
    if entry.name != ENTRY_SCHEMA:
        raise NotAnAuditEntryError(f"record is a {entry.name}, not an {ENTRY_SCHEMA}")
    for field in entry.schema["fields"]:
        if field.get("sensitivity") not in ADMISSIBLE_SENSITIVITY:
            raise NotAnAuditEntryError(
                f"{ENTRY_SCHEMA} v{entry.version} field {field['name']} is tagged "
                f"{field.get('sensitivity')}; the ledger keeps no personal data"
            )


def canonical_bytes(natural: Mapping[str, Any]) -> bytes:
    """RFC 8785 bytes of an entry's natural JSON (see the module docstring)."""
    return rfc8785.dumps(dict(natural))


def parse_canonical(data: bytes) -> dict[str, Any]:
    """The natural JSON object stored as canonical bytes."""
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError) as e:
        raise NotAnAuditEntryError(f"entry bytes are not JSON: {e}") from e
    if not isinstance(value, dict):
        raise NotAnAuditEntryError("entry bytes are not a JSON object")
    return value


def columns_of(natural: Mapping[str, Any]) -> Columns:
    """The query columns of an entry's natural JSON."""
    try:
        return Columns(
            audit_id=str(natural["audit_id"]),
            event_id=str(natural["event_id"]),
            event_type=str(natural["event_type"]),
            recipient=str(natural["recipient_institution_id"]),
            decision=str(natural["decision"]),
            view=str(natural["view"]),
            subject_key=natural.get("subject_key"),
            decided_at=str(natural["decided_at"]),
        )
    except KeyError as e:
        raise NotAnAuditEntryError(f"entry lacks field {e.args[0]}") from e


def prepare(natural: Mapping[str, Any]) -> Prepared:
    """Canonical bytes and columns of an entry's natural JSON."""
    return Prepared(canonical_bytes(natural), columns_of(natural))


def link(previous: bytes, canonical: bytes) -> bytes:
    """``SHA-256(previous || canonical)``: the chain hash of the next entry."""
    return hashlib.sha256(previous + canonical).digest()
