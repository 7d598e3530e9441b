"""What the hub admits, shared by the router and the audit ledger, pure: no I/O.

The router reads events as *plain* datums (uuids as text, times as epoch
milliseconds) and never converts their logical types; the ledger, recipients and
the natural JSON of the CLI and the gateway do. A value that only the router lets
through would be delivered and then refused by the ledger (a disclosure without
its entry). So both sides ask the same predicates here:

- a ``uuid`` is text in the canonical form (lowercase, hyphenated) that ``uuid.UUID``
  reads: the other spellings ``uuid.UUID`` also reads (upper case, braces, no
  hyphens, ``urn:uuid:``) would let one event id pass de-duplication twice;
- a ``timestamp-millis`` lies in years 1 to 9999 (what ``datetime`` can hold);
- a ``date`` likewise.

`event_problem` checks the logical-typed fields of an event's envelope (among them
``event_id``, the one value of the event the ledger stores); `entry_problem` checks
an audit entry before the ledger converts it. Messages name the field, never its
value: the value may be personal data.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping
from typing import Any, Final

from services.contracts.errors import RecordInvalidError

# Epoch milliseconds of 0001-01-01T00:00:00.000Z and 9999-12-31T23:59:59.999Z.
MIN_TIMESTAMP_MS: Final = -62_135_596_800_000
MAX_TIMESTAMP_MS: Final = 253_402_300_799_999
# Days since 1970-01-01 of 0001-01-01 and 9999-12-31.
MIN_DATE_DAYS: Final = -719_162
MAX_DATE_DAYS: Final = 2_932_896

# The envelope's logical-typed fields (a test keeps these equal to the schema's).
ENVELOPE_UUIDS: Final = (
    "event_id",
    "correlation_id",
    "causation_id",
    "supersedes_event_id",
)
ENVELOPE_TIMESTAMPS: Final = ("occurred_at", "recorded_at", "published_at")
ENVELOPE_DATES: Final = ("retention_until",)
# The audit entry's logical-typed fields, as the ledger converts them.
ENTRY_UUIDS: Final = ("audit_id", "event_id")
ENTRY_TIMESTAMPS: Final = ("decided_at",)


class NotAdmissibleError(RecordInvalidError):
    """A record holds a value the ledger (or a recipient's reader) would refuse."""


def is_uuid(value: Any) -> bool:
    """Whether ``value`` is a UUID written in its one canonical form."""
    if not isinstance(value, str):
        return False
    try:
        return str(uuid.UUID(value)) == value
    except ValueError:
        return False


def is_timestamp_ms(value: Any) -> bool:
    """Whether ``value`` is epoch milliseconds of a time in years 1 to 9999."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_TIMESTAMP_MS <= value <= MAX_TIMESTAMP_MS
    )


def is_date_days(value: Any) -> bool:
    """Whether ``value`` is days since 1970-01-01 of a date in years 1 to 9999."""
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and MIN_DATE_DAYS <= value <= MAX_DATE_DAYS
    )


def event_problem(datum: Mapping[str, Any]) -> str | None:
    """Why the hub must refuse this plain event datum's envelope, or None."""
    envelope = datum.get("envelope")
    if not isinstance(envelope, Mapping):
        return "envelope: expected a record"
    return _fields_problem(
        envelope, "envelope.", ENVELOPE_UUIDS, ENVELOPE_TIMESTAMPS, ENVELOPE_DATES
    )


def entry_problem(datum: Mapping[str, Any]) -> str | None:
    """Why the ledger must refuse this plain ``audit_entry`` datum, or None."""
    return _fields_problem(datum, "", ENTRY_UUIDS, ENTRY_TIMESTAMPS, ())


def check_entry(datum: Mapping[str, Any]) -> None:
    """Raise `NotAdmissibleError` unless the ledger admits this plain audit entry."""
    problem = entry_problem(datum)
    if problem is not None:
        path, _, expected = problem.partition(": expected ")
        raise NotAdmissibleError(path, expected)


def _fields_problem(
    record: Mapping[str, Any],
    prefix: str,
    uuids: tuple[str, ...],
    timestamps: tuple[str, ...],
    dates: tuple[str, ...],
) -> str | None:
    # A missing or null value is left to the schema: these fields' unions allow it.
    for name in uuids:
        value = record.get(name)
        if value is not None and not is_uuid(value):
            return f"{prefix}{name}: expected a UUID (lowercase, hyphenated)"
    for name in timestamps:
        value = record.get(name)
        if value is not None and not is_timestamp_ms(value):
            return f"{prefix}{name}: expected a time in years 1 to 9999"
    for name in dates:
        value = record.get(name)
        if value is not None and not is_date_days(value):
            return f"{prefix}{name}: expected a date in years 1 to 9999"
    return None
