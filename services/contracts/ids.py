"""Institution and event type ids: lowercase, the same in topics, records and policy."""

from __future__ import annotations

import re
from typing import Final

from services.contracts.errors import InvalidIdError, UnknownEventTypeError

INSTITUTION_ID: Final = re.compile(r"[a-z][a-z0-9_]*")
EVENT_TYPES: Final = (
    "return_arrival",
    "border_crossing",
    "displacement_registration",
    "referral",
    # Published by the hub itself (its referral tracker), routed like the others.
    "referral_overdue",
)
_MAX_ID_LENGTH: Final = 64


def check_institution_id(value: str) -> str:
    """Return ``value`` if it is a well-formed institution id, else raise."""
    if len(value) > _MAX_ID_LENGTH or not INSTITUTION_ID.fullmatch(value):
        raise InvalidIdError(
            f"institution id {value[:_MAX_ID_LENGTH]!r} is not lowercase "
            "[a-z][a-z0-9_]* of at most 64 characters"
        )
    return value


def check_event_type(value: str) -> str:
    """Return ``value`` if it names one of the hub's event types, else raise."""
    if value not in EVENT_TYPES:
        raise UnknownEventTypeError(
            f"unknown event type {value[:_MAX_ID_LENGTH]!r}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    return value
