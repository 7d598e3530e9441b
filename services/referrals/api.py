"""The tracker's views for the parties of a referral, on its operations port.

The gateway authenticates an institution and forwards its ``GET /v1/referrals``
here, naming the institution; the tracker answers with the referrals that
institution is a party to, and nothing else. Each view holds what the parties
already share: the hub's referral id (the one the referring institution published
and the receiving one was delivered), the two institutions, status, urgency, coarse
service group, times, the overdue mark, and the history of applied transitions
(time, institution, event). Never a person's data: the tracker has none. Refused
events (forgeries, replays) stay out: they are the hub's matter, seen by operators
with ``puente referrals show``.

An institution without a stream (``stream = false`` in the policy: police,
prosecution, the international partners) is reached only by referrals it consented
to receive; the tracker cannot see whether a referral addressed to it was delivered,
so such an institution sees a received referral only once it has acted on it.

The port is the tracker's operations port, internal like /metrics: only the gateway
should reach it.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Collection
from pathlib import Path
from typing import Annotated, Any, Final

from fastapi import FastAPI, Query
from fastapi import Path as PathParam
from fastapi.responses import JSONResponse

from services.contracts.ids import INSTITUTION_ID
from services.contracts.natural import format_timestamp
from services.referrals.errors import TrackerStoreError
from services.referrals.machine import Referral
from services.referrals.store import APPLIED, Store, Tracked

log = logging.getLogger(__name__)
ROLES: Final = ("sent", "received")
STATUSES: Final = (
    "SENT", "ACCEPTED", "REJECTED", "IN_SERVICE", "DONE", "REVOKED", "EXPIRED",
)  # fmt: skip
_ID_PATTERN: Final = INSTITUTION_ID.pattern
_MAX_LIST: Final = 1000
# The institution the gateway authenticated (module level: FastAPI resolves it here).
Institution = Annotated[str, Query(pattern=_ID_PATTERN, max_length=64)]


def referral_views(app: FastAPI, db: Path, no_stream: Collection[str]) -> None:
    """Add ``/v1/referrals`` and ``/v1/referrals/{id}`` (institution named by caller)."""

    @app.get("/v1/referrals")
    async def list_referrals(
        institution: Institution,
        role: Annotated[str | None, Query(pattern="^(sent|received)$")] = None,
        status: Annotated[str | None, Query(pattern="^[A-Z_]{1,20}$")] = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=_MAX_LIST)] = 200,
    ) -> JSONResponse:
        if status is not None and status not in STATUSES:
            return _error(400, f"status is one of {', '.join(STATUSES)}")

        def read(store: Store) -> list[dict[str, Any]]:
            found = store.of_institution(institution, role, status, overdue=overdue)
            visible = (t for t in found if _visible(store, t, institution, no_stream))
            return [_summary(t, institution) for t in itertools.islice(visible, limit)]

        return await _answer(db, read, lambda views: {"referrals": views}, [])

    @app.get("/v1/referrals/{referral_id}")
    async def get_referral(
        referral_id: Annotated[str, PathParam(max_length=64)],
        institution: Institution,
    ) -> JSONResponse:
        def read(store: Store) -> dict[str, Any] | None:
            tracked = store.get(referral_id)
            if tracked is None or not _visible(store, tracked, institution, no_stream):
                return None
            view = _summary(tracked, institution)
            view["history"] = [
                {
                    "at": format_timestamp(step.occurred_at),
                    "institution": step.institution,
                    "lifecycle_event": step.lifecycle_event,
                    "status": step.status,
                    "previous_status": step.previous_status,
                }
                for step in store.history(referral_id)
                if step.outcome == APPLIED
            ]
            return view

        return await _answer(db, read, lambda view: view, None)


def _visible(
    store: Store, tracked: Tracked, institution: str, no_stream: Collection[str]
) -> bool:
    referral = tracked.referral
    if referral.referring == institution:
        return True
    if referral.receiving != institution:
        return False
    return institution not in no_stream or store.acted(referral.referral_id, institution)


def _summary(tracked: Tracked, institution: str) -> dict[str, Any]:
    r: Referral = tracked.referral
    overdue = tracked.overdue
    return {
        "referral_id": r.referral_id,
        "role": "sent" if r.referring == institution else "received",
        "referring_institution_id": r.referring,
        "receiving_institution_id": r.receiving,
        "status": r.status,
        "urgency": r.urgency,
        "service_group": r.service_group,
        "created_at": _at(r.created_at),
        "received_at": _at(r.sent_at),
        "updated_at": _at(r.updated_at),
        "acknowledged_at": _at(r.acknowledged_at),
        "service_started_at": _at(r.service_started_at),
        "closed_at": _at(r.closed_at),
        # A closed referral owes nothing, whatever mark the last check left.
        "overdue": None
        if overdue is None or not r.open
        else {
            "deadline": overdue.stage.upper(),
            "escalation_level": overdue.level,
            "due_at": _at(overdue.due_at),
        },
    }


def _at(value: Any) -> str | None:
    return None if value is None else format_timestamp(value)


async def _answer(
    db: Path, read: Callable[[Store], Any], shape: Callable[[Any], Any], empty: Any
) -> JSONResponse:
    def run() -> Any:
        if not db.exists():
            return empty  # nothing tracked yet
        store = Store.open(db, readonly=True)
        try:
            return read(store)
        finally:
            store.close()

    try:
        found = await asyncio.to_thread(run)
    except TrackerStoreError:
        # The cause (a path, an SQLite message) is the operator's, in the tracker's log.
        log.warning("referral view not answered: the tracker database cannot be read")
        return _error(503, "the tracker database cannot be read now")
    if found is None:
        return _error(404, "no such referral among the caller's")
    return JSONResponse(shape(found))


def _error(status: int, detail: str) -> JSONResponse:
    return JSONResponse({"detail": detail}, status)
