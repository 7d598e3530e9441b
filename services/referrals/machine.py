"""The state of one referral, moved by its lifecycle events (pure).

Who may publish each event, and which status edges exist, are the hub's shared rules
(`services.contracts.lifecycle`, which the router applies to every record on its
own). The tracker adds what only the referral's history can tell: a referral must
exist before anything but CREATED happens to it, its parties are fixed by its first
event (only a reassignment names a new receiving institution), and an event must
leave the status the referral is really in, and may not have occurred before the
last one applied (beyond the parties' clock skew), so a transition published out of
order or replayed against a later state is refused rather than applied.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Final

from services.contracts import lifecycle
from services.referrals.errors import ReferralsError

# How much earlier than the last applied event a later one may say it occurred: the
# parties' clocks differ (the router allows as much skew into the future). Beyond it,
# the event is a replay of the past (e.g. two reassignments arriving swapped).
CLOCK_SKEW: Final = timedelta(minutes=5)
# Statuses in which the receiving institution has answered (acknowledged) the referral.
ANSWERED: Final = frozenset({"ACCEPTED", "REJECTED", "IN_SERVICE", "DONE"})


@dataclass(frozen=True, slots=True)
class Transition:
    """One lifecycle event as the tracker reads it: symbols, ids and times only."""

    event_id: str
    referral_id: str
    source: str  # the publishing institution (the delivery's envelope source)
    occurred_at: datetime
    lifecycle_event: str
    status: str
    previous_status: str | None
    referring: str
    receiving: str
    urgency: str
    service_group: str
    is_minor: bool
    response_due_at: datetime | None = None

    def payload(self) -> dict[str, Any]:
        """The fields `lifecycle.transition_problem` reads, under their schema names."""
        return {
            "lifecycle_event": self.lifecycle_event,
            "status": self.status,
            "previous_status": self.previous_status,
            "referring_institution_id": self.referring,
            "receiving_institution_id": self.receiving,
        }


@dataclass(frozen=True, slots=True)
class Referral:
    """The current state of one referral."""

    referral_id: str
    referring: str
    receiving: str
    urgency: str
    service_group: str
    is_minor: bool
    status: str
    created_at: datetime
    sent_at: datetime  # when the current receiving institution got it
    updated_at: datetime
    acknowledged_at: datetime | None = None
    service_started_at: datetime | None = None
    closed_at: datetime | None = None
    response_due_at: datetime | None = None
    events: int = 1

    @property
    def open(self) -> bool:
        """Whether the referral still waits for something."""
        return self.status not in lifecycle.TERMINAL


class TransitionRefusedError(ReferralsError):
    """A lifecycle event that may not move the referral; ``reason`` is its code."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason


class TransitionEarlyError(TransitionRefusedError):
    """An event that may apply once an earlier one arrives: it waits for it.

    Each institution publishes on its own topic, and nothing orders two topics: the
    receiving institution's ACCEPTED can reach the tracker before the referring
    institution's CREATED. Such an event is kept aside, not refused.
    """


def apply(current: Referral | None, event: Transition) -> Referral:
    """The referral after ``event``; `TransitionRefusedError` if it may not happen."""
    problem = lifecycle.transition_problem(event.payload(), event.source)
    if problem is not None:
        raise TransitionRefusedError(*problem)
    if current is None:
        if event.lifecycle_event != "CREATED":
            raise TransitionEarlyError(
                lifecycle.UNKNOWN_REFERRAL,
                f"{event.lifecycle_event} for a referral the hub never saw created",
            )
        return _created(event)
    _check_against(current, event)
    return _moved(current, event)


def _check_against(current: Referral, event: Transition) -> None:
    if event.lifecycle_event == "CREATED":
        raise TransitionRefusedError(
            lifecycle.TRANSITION_INVALID, "the referral was created already"
        )
    if event.referring != current.referring:
        raise TransitionRefusedError(
            lifecycle.PARTY_MISMATCH,
            f"the referral was made by {current.referring}, not {event.referring}",
        )
    if event.receiving != current.receiving and event.lifecycle_event != "REASSIGNED":
        raise TransitionRefusedError(
            lifecycle.PARTY_MISMATCH,
            f"the referral is addressed to {current.receiving}, not {event.receiving}",
        )
    stale = event.occurred_at < current.updated_at - CLOCK_SKEW
    if event.previous_status != current.status:
        # A later event of an open referral may wait for the ones it follows.
        early = current.open and not stale
        raise (TransitionEarlyError if early else TransitionRefusedError)(
            lifecycle.TRANSITION_INVALID,
            f"the referral is {current.status}; {event.lifecycle_event} leaves "
            f"{event.previous_status} (out of order or replayed)",
        )
    if stale:
        raise TransitionRefusedError(
            lifecycle.TRANSITION_INVALID,
            f"{event.lifecycle_event} occurred before the referral's last transition "
            "(out of order or replayed)",
        )


def _created(event: Transition) -> Referral:
    return Referral(
        referral_id=event.referral_id,
        referring=event.referring,
        receiving=event.receiving,
        urgency=event.urgency,
        service_group=event.service_group,
        is_minor=event.is_minor,
        status=event.status,
        created_at=event.occurred_at,
        sent_at=event.occurred_at,
        updated_at=event.occurred_at,
        response_due_at=event.response_due_at,
    )


def _moved(current: Referral, event: Transition) -> Referral:
    at, status = event.occurred_at, event.status
    changes: dict[str, Any] = {
        "status": status,
        "updated_at": at,
        "events": current.events + 1,
    }
    if event.lifecycle_event == "REASSIGNED":
        # A new receiving institution: its own clock starts now.
        changes |= {
            "receiving": event.receiving,
            "sent_at": at,
            "acknowledged_at": None,
            "service_started_at": None,
            "response_due_at": event.response_due_at,
        }
    elif status in ANSWERED and current.acknowledged_at is None:
        changes["acknowledged_at"] = at
    if status in ("IN_SERVICE", "DONE") and current.service_started_at is None:
        changes["service_started_at"] = at
    if status in lifecycle.TERMINAL:
        changes["closed_at"] = at
    return dataclasses.replace(current, **changes)


def transition_of(datum: Mapping[str, Any]) -> Transition:
    """The tracker's reading of a decoded referral delivery (its Avro datum)."""
    envelope, payload = datum["envelope"], datum["payload"]
    profile = payload.get("subject_profile") or {}
    return Transition(
        event_id=str(envelope["event_id"]),
        referral_id=str(payload["referral_id"]),
        source=str(envelope["source_institution_id"]),
        occurred_at=envelope["occurred_at"],
        lifecycle_event=str(payload["lifecycle_event"]),
        status=str(payload["status"]),
        previous_status=payload.get("previous_status"),
        referring=str(payload["referring_institution_id"]),
        receiving=str(payload["receiving_institution_id"]),
        urgency=str(payload.get("urgency") or "STANDARD"),
        service_group=str(payload.get("service_group") or "OTHER"),
        is_minor=bool(profile.get("is_minor")),
        response_due_at=payload.get("response_due_at"),
    )
