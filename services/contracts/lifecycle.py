"""Who may say what about a referral (pure): the author and status of each transition.

A referral joins two institutions. Only the referring institution creates, revokes or
reassigns it; only the receiving institution accepts, rejects, schedules, starts and
completes it; only the hub expires it. A record whose source is not the author its
lifecycle event requires is a forgery: without this check a receiving institution
could publish "rree_vmdmh refers to minsal" and the ledger would record a disclosure
rree_vmdmh never made. The router and the referral tracker share these rules.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any, Final

# Rejection reasons (hub.rejected.<source>).
PARTY_MISMATCH: Final = "referral_party_mismatch"
TRANSITION_INVALID: Final = "referral_transition_invalid"
UNKNOWN_REFERRAL: Final = "referral_unknown"
REFERRING: Final = "referring"
RECEIVING: Final = "receiving"
HUB: Final = "hub"
# The hub's own source for what only it may say (its referral tracker's identity in
# the access policy, which grants it the right to publish referral events).
HUB_SOURCE: Final = "hub_referrals"
# lifecycle event -> (who publishes it, the statuses it may leave the referral in)
TRANSITIONS: Final[Mapping[str, tuple[str, frozenset[str]]]] = {
    "CREATED": (REFERRING, frozenset({"SENT"})),
    "REVOKED": (REFERRING, frozenset({"REVOKED"})),
    "REASSIGNED": (REFERRING, frozenset({"SENT"})),
    "ACCEPTED": (RECEIVING, frozenset({"ACCEPTED"})),
    "REJECTED": (RECEIVING, frozenset({"REJECTED"})),
    "APPOINTMENT_SCHEDULED": (RECEIVING, frozenset({"ACCEPTED"})),
    "SERVICE_STARTED": (RECEIVING, frozenset({"IN_SERVICE"})),
    "COMPLETED": (RECEIVING, frozenset({"DONE"})),
    "EXPIRED": (HUB, frozenset({"EXPIRED"})),
}


TERMINAL: Final = frozenset({"REJECTED", "DONE", "REVOKED", "EXPIRED"})
# previous status -> the statuses a referral may move to from it (None: a new one).
EDGES: Final[Mapping[str | None, frozenset[str]]] = {
    None: frozenset({"SENT"}),
    "SENT": frozenset({"SENT", "ACCEPTED", "REJECTED", "REVOKED", "EXPIRED"}),
    "ACCEPTED": frozenset(
        {"SENT", "ACCEPTED", "IN_SERVICE", "DONE", "REVOKED", "EXPIRED"}
    ),
    "IN_SERVICE": frozenset({"SENT", "DONE", "REVOKED"}),
}


def author_of(lifecycle_event: str) -> str | None:
    """Which party publishes ``lifecycle_event`` (None: not a known event)."""
    found = TRANSITIONS.get(lifecycle_event)
    return found[0] if found else None


def transition_problem(payload: Mapping[str, Any], source: str) -> tuple[str, str] | None:
    """Why a referral payload may not come from ``source`` (reason, message), or None.

    Reads ``lifecycle_event``, ``status``, ``previous_status`` and the two parties.
    The message names institutions and symbols only, never personal data.
    """
    event, status = payload["lifecycle_event"], payload["status"]
    previous = payload["previous_status"]
    found = TRANSITIONS.get(event)
    if found is None:
        return TRANSITION_INVALID, f"lifecycle event {event} is not one the hub knows"
    author, statuses = found
    expected = HUB_SOURCE if author == HUB else payload[f"{author}_institution_id"]
    if author == HUB and source != expected:
        return PARTY_MISMATCH, f"{event} is the hub's to publish, not {source}'s"
    if source != expected:
        return PARTY_MISMATCH, (
            f"{event} comes from the {author} institution ({expected}), not from {source}"
        )
    if (event == "CREATED") != (previous is None):
        return TRANSITION_INVALID, (
            "CREATED starts a referral (no previous status); "
            "every later event names the status it leaves"
        )
    if status not in statuses:
        return TRANSITION_INVALID, (
            f"{event} leaves a referral in {', '.join(sorted(statuses))}, not {status}"
        )
    problem = order_problem(previous, status)
    return None if problem is None else (TRANSITION_INVALID, problem)


def order_problem(previous: str | None, status: str) -> str | None:
    """Why a referral may not move from ``previous`` to ``status``, or None."""
    if previous in TERMINAL:
        return f"a {previous} referral is closed; it cannot become {status}"
    if status not in EDGES.get(previous, frozenset()):
        return f"a referral cannot move from {previous or 'nothing'} to {status}"
    return None
