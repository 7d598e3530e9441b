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
from typing import Final

FORGED_TRANSITION: Final = "forged_transition"
REFERRING: Final = "referring"
RECEIVING: Final = "receiving"
HUB: Final = "hub"
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


def author_of(lifecycle_event: str) -> str | None:
    """Which party publishes ``lifecycle_event`` (None: not a known event)."""
    found = TRANSITIONS.get(lifecycle_event)
    return found[0] if found else None


def transition_problem(
    lifecycle_event: str,
    status: str,
    source: str,
    referring: str,
    receiving: str,
) -> str | None:
    """Why a referral record may not come from ``source``, or None when it may.

    The message names institutions and symbols only, never personal data.
    """
    found = TRANSITIONS.get(lifecycle_event)
    if found is None:
        return f"lifecycle event {lifecycle_event} is not one the hub knows"
    author, statuses = found
    if author == HUB:
        return f"{lifecycle_event} is the hub's to publish, not {source}'s"
    expected = referring if author == REFERRING else receiving
    if source != expected:
        return (
            f"{lifecycle_event} comes from the {author} institution ({expected}), "
            f"not from {source}"
        )
    if status not in statuses:
        return (
            f"{lifecycle_event} leaves a referral in {', '.join(sorted(statuses))}, "
            f"not {status}"
        )
    return None
