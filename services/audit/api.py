"""The audit service's HTTP API, beside /health and /metrics on its port.

Each request opens the ledger read-only, so queries never wait for ingestion and
never see a half-written batch (SQLite WAL readers see whole transactions).
"""

from __future__ import annotations

import base64
import contextlib
from collections.abc import Iterator, Mapping
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import FastAPI, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from services.audit import queries
from services.audit.ledger import Ledger, LedgerError
from services.audit.verify import Report, verify
from services.contracts.errors import ContractError
from services.runtime.ops import HealthCheck, ops_app


class KeyInfo(BaseModel):
    """A public key a verifier trusts, as base64 of the raw 32 bytes."""

    key_id: str
    public_key: str


class ProblemInfo(BaseModel):
    """One finding of `verify`."""

    on: str
    seq: int
    kind: str
    detail: str


class VerifyResult(BaseModel):
    """The outcome of verifying the whole ledger."""

    ok: bool
    ledger_id: str
    entries: int
    head_seq: int
    head_hash: str
    checkpoints: int
    last_checkpoint_seq: int
    uncovered_entries: int
    pinned: bool
    keys: list[KeyInfo]
    first_problem: ProblemInfo | None
    problems: list[ProblemInfo]


def verify_ledger(path: Path, pinned: Mapping[str, bytes] | None = None) -> VerifyResult:
    """Open the ledger at ``path`` read-only and verify it."""
    with reading(path) as ledger:
        report = verify(
            ledger.rows(), ledger.checkpoints(), ledger.signing_keys(), pinned
        )
        return as_result(report, ledger.ledger_id)


def as_result(report: Report, ledger_id: str) -> VerifyResult:
    """The JSON-friendly form of a verification report."""
    problems = [
        ProblemInfo(on=p.on, seq=p.seq, kind=p.kind, detail=p.detail)
        for p in report.problems
    ]
    return VerifyResult(
        ok=report.ok,
        ledger_id=ledger_id,
        entries=report.entries,
        head_seq=report.head_seq,
        head_hash=report.head.hex(),
        checkpoints=report.checkpoints,
        last_checkpoint_seq=report.last_checkpoint_seq,
        uncovered_entries=report.uncovered,
        pinned=report.pinned,
        keys=[
            KeyInfo(key_id=k, public_key=base64.b64encode(v).decode("ascii"))
            for k, v in sorted(report.trusted_keys.items())
        ],
        first_problem=problems[0] if problems else None,
        problems=problems,
    )


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Ledger]:
    """The ledger at ``path``, open read-only for the duration of the block."""
    ledger = Ledger.open_reader(path)
    try:
        yield ledger
    finally:
        ledger.close()


def audit_app(
    ledger_path: Path, registry: CollectorRegistry, health: HealthCheck
) -> FastAPI:
    """/health, /metrics and the /v1 query endpoints over the ledger file."""
    app = ops_app("audit", registry, health)
    app.add_exception_handler(ContractError, _bad_request)
    app.add_exception_handler(LedgerError, _unavailable)

    @app.get("/v1/events/{event_id}/recipients")
    def event_recipients(event_id: str) -> queries.EventRecipients:
        """Who received event ``event_id``, and every decision taken on it."""
        with reading(ledger_path) as ledger:
            return queries.who_received(ledger, event_id)

    @app.get("/v1/institutions/{institution_id}/received")
    def institution_received(
        institution_id: str,
        since: Annotated[
            datetime | None, Query(description="inclusive, RFC 3339")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="exclusive, RFC 3339")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = queries.DEFAULT_LIMIT,
    ) -> queries.InstitutionReceived:
        """What an institution received in a time window: counts and entries."""
        with reading(ledger_path) as ledger:
            return queries.received(ledger, institution_id, since, until, limit)

    @app.get("/v1/subjects/{subject_key}/report")
    def subject_report(subject_key: str) -> queries.SubjectReport:
        """Every institution that received data about this hub subject key."""
        with reading(ledger_path) as ledger:
            return queries.subject_report(ledger, subject_key)

    @app.get("/v1/verify")
    def verify_now() -> VerifyResult:
        """Recompute the chain and check every checkpoint signature."""
        return verify_ledger(ledger_path)

    return app


def _bad_request(_request: Request, exc: Exception) -> JSONResponse:
    return _problem(400, "invalid query", exc)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return _problem(503, "ledger unavailable", exc)


def _problem(status: int, title: str, exc: Exception) -> JSONResponse:
    body: dict[str, Any] = {"title": title, "status": status, "detail": str(exc)}
    return JSONResponse(body, status, media_type="application/problem+json")
