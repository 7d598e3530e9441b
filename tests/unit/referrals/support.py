"""Lifecycle events of one referral, for the tracker's tests."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime, timedelta
from typing import Final

from services.contracts import lifecycle
from services.referrals.machine import Transition

REFERRING: Final = "dgme"
RECEIVING: Final = "conapina"
START: Final = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)  # 09:00 in El Salvador


def event(
    lifecycle_event: str,
    previous: str | None,
    *,
    status: str | None = None,
    source: str | None = None,
    referral_id: str = "r-1",
    at: datetime = START,
    referring: str = REFERRING,
    receiving: str = RECEIVING,
    urgency: str = "IMMEDIATE_24H",
    service_group: str = "SPECIALISED_PROTECTION",
    is_minor: bool = True,
    event_id: str | None = None,
) -> Transition:
    """A lifecycle event with the status its kind leaves, from its author by default."""
    author, statuses = lifecycle.TRANSITIONS[lifecycle_event]
    if source is None:
        source = referring if author == lifecycle.REFERRING else receiving
    return Transition(
        event_id=event_id or str(uuid.uuid4()),
        referral_id=referral_id,
        source=source,
        occurred_at=at,
        lifecycle_event=lifecycle_event,
        status=status or next(iter(statuses)),
        previous_status=previous,
        referring=referring,
        receiving=receiving,
        urgency=urgency,
        service_group=service_group,
        is_minor=is_minor,
    )


def served(referral_id: str = "r-1") -> list[Transition]:
    """A referral from creation to completion, an hour between events."""
    steps = [
        ("CREATED", None),
        ("ACCEPTED", "SENT"),
        ("APPOINTMENT_SCHEDULED", "ACCEPTED"),
        ("SERVICE_STARTED", "ACCEPTED"),
        ("COMPLETED", "IN_SERVICE"),
    ]
    return [
        event(name, previous, referral_id=referral_id, at=START + timedelta(hours=i))
        for i, (name, previous) in enumerate(steps)
    ]
