"""The audit service's HTTP API, beside /health and /metrics on its port.

Each question needs a bearer credential (`services.audit.credentials`): the
oversight role may ask everything, an institution only about disclosures to
itself (who-received filtered to itself; its own received list; no subject
reports, no verification). Every question is logged before it is answered
(`services.audit.querylog`). /health and /metrics stay open.

Each request opens the ledger read-only, so queries never wait for ingestion and
never see a half-written batch (SQLite WAL readers see whole transactions).
"""

from __future__ import annotations

import base64
import contextlib
import dataclasses
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, TypeVar

from fastapi import Depends, FastAPI, Query, Request
from fastapi.responses import JSONResponse
from prometheus_client import CollectorRegistry
from pydantic import BaseModel

from services.audit import queries
from services.audit.credentials import Credential, CredentialStore, Role
from services.audit.keys import SigningKeyError
from services.audit.ledger import Ledger, LedgerError
from services.audit.querylog import Asker, logged
from services.audit.rotation import Rotation
from services.audit.trust import witness_anchors
from services.audit.verify import Anchor, Report, TopicEntries, topic_problems, verify
from services.contracts.errors import ContractError, PuenteError
from services.runtime.ops import HealthCheck, ops_app

_T = TypeVar("_T")


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


class AnchorInfo(BaseModel):
    """The newest signed head found outside the ledger."""

    seq: int
    signed_at: str
    where: str


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
    anchors: int = 0
    newest_anchor: AnchorInfo | None = None
    against_kafka: bool = False


def verify_ledger(
    path: Path,
    pinned: Mapping[str, bytes],
    anchors: Iterable[Anchor] = (),
    rotations: Iterable[Rotation] = (),
    topic: tuple[str, TopicEntries] | None = None,
) -> VerifyResult:
    """Open the ledger at ``path`` read-only and verify it against ``pinned`` keys.

    ``anchors`` are signed heads found outside the ledger; ``topic`` the audit
    topic read to its end (name and entries), to compare the ledger with.
    """
    with reading(path) as ledger:
        ledger_id = ledger.ledger_id
        report = verify(
            ledger.rows(),
            ledger.checkpoints(),
            pinned,
            ledger_id=ledger_id,
            rotations=[*ledger.rotations(), *rotations],
            anchors=anchors,
        )
        if topic is not None:
            report = _with_topic(report, ledger, *topic)
        return as_result(report, ledger_id, against_kafka=topic is not None)


def _with_topic(
    report: Report, ledger: Ledger, name: str, entries: TopicEntries
) -> Report:
    ids = {str(r[0]) for r in ledger.select("SELECT audit_id FROM entries")}
    positions = {p: o for (t, p), o in ledger.positions().items() if t == name}
    found = topic_problems(name, entries, ids, ledger.skipped_count(), positions)
    return dataclasses.replace(report, problems=[*report.problems, *found])


def as_result(
    report: Report, ledger_id: str, *, against_kafka: bool = False
) -> VerifyResult:
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
        anchors=report.anchors,
        newest_anchor=(
            AnchorInfo(
                seq=newest.checkpoint.seq,
                signed_at=newest.checkpoint.time,
                where=newest.where,
            )
            if (newest := report.newest_anchor) is not None
            else None
        ),
        against_kafka=against_kafka,
    )


@contextlib.contextmanager
def reading(path: Path) -> Iterator[Ledger]:
    """The ledger at ``path``, open read-only for the duration of the block."""
    ledger = Ledger.open_reader(path)
    try:
        yield ledger
    finally:
        ledger.close()


@dataclass(frozen=True, slots=True)
class ApiConfig:
    """What the audit API reads: the ledger, the credentials, what verify trusts."""

    ledger_path: Path
    credentials_path: Path
    pinned: Mapping[str, bytes] | None = None  # None: no key configured to verify
    witness_file: Path | None = None


class NotAuthenticatedError(PuenteError):
    """The request carries no live audit credential."""


class AccessDeniedError(PuenteError):
    """The credential's role may not ask this question."""


def audit_app(
    config: ApiConfig, registry: CollectorRegistry, health: HealthCheck
) -> FastAPI:
    """/health and /metrics (open), and the /v1 questions (a credential each, logged)."""
    app = ops_app("audit", registry, health)
    app.add_exception_handler(ContractError, _bad_request)
    app.add_exception_handler(LedgerError, _unavailable)
    app.add_exception_handler(NotAuthenticatedError, _unauthenticated)
    app.add_exception_handler(AccessDeniedError, _forbidden)
    app.add_exception_handler(SigningKeyError, _unavailable)
    ledger_path = config.ledger_path

    app.state.audit_config = config

    @app.get("/v1/events/{event_id}/recipients")
    def event_recipients(event_id: str, who: Caller) -> queries.EventRecipients:
        """Who received event ``event_id`` (an institution: only itself)."""

        def answer() -> queries.EventRecipients:
            with reading(ledger_path) as ledger:
                found = queries.who_received(ledger, event_id)
            return found if who.role is Role.OVERSIGHT else _only(found, who)

        return _logged(ledger_path, who, "who_received", event_id, answer)

    @app.get("/v1/institutions/{institution_id}/received")
    def institution_received(
        institution_id: str,
        who: Caller,
        since: Annotated[
            datetime | None, Query(description="inclusive, RFC 3339")
        ] = None,
        until: Annotated[
            datetime | None, Query(description="exclusive, RFC 3339")
        ] = None,
        limit: Annotated[int, Query(ge=1, le=10_000)] = queries.DEFAULT_LIMIT,
    ) -> queries.InstitutionReceived:
        """What an institution received in a time window (an institution: itself)."""

        def answer() -> queries.InstitutionReceived:
            if who.role is not Role.OVERSIGHT and who.institution != institution_id:
                raise AccessDeniedError(
                    "an institution credential may ask only about disclosures to "
                    "its own institution"
                )
            with reading(ledger_path) as ledger:
                return queries.received(ledger, institution_id, since, until, limit)

        return _logged(ledger_path, who, "received", institution_id, answer)

    @app.get("/v1/subjects/{subject_key}/report")
    def subject_report(subject_key: str, who: Caller) -> queries.SubjectReport:
        """Every institution that received data about this subject (oversight only)."""

        def answer() -> queries.SubjectReport:
            _oversight(who, "a subject report")
            with reading(ledger_path) as ledger:
                return queries.subject_report(ledger, subject_key)

        return _logged(ledger_path, who, "subject_report", subject_key, answer)

    @app.get("/v1/verify")
    def verify_now(who: Caller) -> VerifyResult:
        """The chain, every signature and the witness's heads (oversight only)."""

        def answer() -> VerifyResult:
            _oversight(who, "verification")
            if config.pinned is None:
                raise NoKeyError("no public key is configured to verify the ledger with")
            anchors: list[Anchor] = []
            rotations: list[Rotation] = []
            if config.witness_file is not None and config.witness_file.exists():
                anchors, rotations, _ = witness_anchors(config.witness_file)
            return verify_ledger(ledger_path, config.pinned, anchors, rotations)

        return _logged(ledger_path, who, "verify", None, answer)

    return app


def _caller(request: Request) -> Credential:
    """The live credential of the request's bearer token (401 otherwise)."""
    config: ApiConfig = request.app.state.audit_config
    scheme, _, token = request.headers.get("authorization", "").partition(" ")
    if scheme.lower() != "bearer" or not token.strip():
        raise NotAuthenticatedError("an audit API credential is required (Bearer)")
    store = CredentialStore(config.credentials_path)
    try:
        found = store.check(token.strip())
    finally:
        store.close()
    if found is None:
        raise NotAuthenticatedError("the credential is unknown or revoked")
    return found


Caller = Annotated[Credential, Depends(_caller)]


class NoKeyError(SigningKeyError):
    """The API has no pinned key to verify with."""


def _oversight(who: Credential, what: str) -> None:
    if who.role is not Role.OVERSIGHT:
        raise AccessDeniedError(f"{what} is for the oversight role only")


def _only(found: queries.EventRecipients, who: Credential) -> queries.EventRecipients:
    """Who-received as one institution may see it: its own decisions only."""
    mine = [d for d in found.decisions if d.recipient_institution_id == who.institution]
    recipients = [r for r in found.recipients if r == who.institution]
    return queries.EventRecipients(
        event_id=found.event_id, recipients=recipients, decisions=mine
    )


def _logged(
    ledger_path: Path,
    who: Credential,
    query: str,
    key: str | None,
    answer: Callable[[], _T],
) -> _T:
    """``answer()``, with the question logged first as it ended (status code)."""
    asker = Asker(who.id, who.role.value, who.institution)
    return logged(ledger_path, asker, query, key, answer, refused=(AccessDeniedError,))


def _bad_request(_request: Request, exc: Exception) -> JSONResponse:
    return _problem(400, "invalid query", exc)


def _unavailable(_request: Request, exc: Exception) -> JSONResponse:
    return _problem(503, "ledger unavailable", exc)


def _unauthenticated(_request: Request, exc: Exception) -> JSONResponse:
    response = _problem(401, "not authenticated", exc)
    response.headers["WWW-Authenticate"] = "Bearer"
    return response


def _forbidden(_request: Request, exc: Exception) -> JSONResponse:
    return _problem(403, "not allowed for this credential", exc)


def _problem(status: int, title: str, exc: Exception) -> JSONResponse:
    body: dict[str, Any] = {"title": title, "status": status, "detail": str(exc)}
    return JSONResponse(body, status, media_type="application/problem+json")
