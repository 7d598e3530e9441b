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
# The hub's own services (its referral tracker, its indicators) take part in the
# policy as institutions named hub_*. They publish and read over Kafka under their
# own principals and never through the gateway, which holds no right for them.
HUB_SERVICE_PREFIX: Final = "hub_"


def check_institution_id(value: str) -> str:
    """Return ``value`` if it is a well-formed institution id, else raise."""
    if len(value) > _MAX_ID_LENGTH or not INSTITUTION_ID.fullmatch(value):
        raise InvalidIdError(
            f"institution id {value[:_MAX_ID_LENGTH]!r} is not lowercase "
            "[a-z][a-z0-9_]* of at most 64 characters"
        )
    return value


def is_hub_service(institution: str) -> bool:
    """Whether ``institution`` names one of the hub's own services, not a member."""
    return institution.startswith(HUB_SERVICE_PREFIX)


def check_event_type(value: str) -> str:
    """Return ``value`` if it names one of the hub's event types, else raise."""
    if value not in EVENT_TYPES:
        raise UnknownEventTypeError(
            f"unknown event type {value[:_MAX_ID_LENGTH]!r}; "
            f"expected one of {', '.join(EVENT_TYPES)}"
        )
    return value
