"""``puente audit``: verify the ledger and ask it who received what."""

from __future__ import annotations

import asyncio
import dataclasses
import getpass
import json
import os
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final, TypeVar

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from services.audit import outside, queries, querylog
from services.audit.api import VerifyResult, reading, verify_ledger
from services.audit.credentials import CredentialStore, Role
from services.audit.keys import public_pem
from services.audit.ledger import Ledger
from services.audit.queries import QueryError
from services.audit.rotation import Rotation
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys, witness_anchors
from services.audit.verify import Anchor
from services.contracts.catalog import Catalog
from services.runtime import broker
from services.runtime.cli import PuenteGroup
from services.runtime.settings import KafkaSettings

_SHOWN_PROBLEMS: Final = 20


_T = TypeVar("_T")

app = typer.Typer(
    cls=PuenteGroup,
    help="The disclosure ledger: verify it; who received an event, what an "
    "institution received, which institutions received data about a person.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False, soft_wrap=True)

LedgerOption = Annotated[
    Path | None,
    typer.Option(
        "--ledger",
        metavar="FILE",
        help="Ledger file (default: PUENTE_AUDIT_LEDGER_PATH, else the state dir's; "
        "else the one `puente up` writes on the embedded broker)",
        show_default=False,
    ),
]
JsonOption = Annotated[bool, typer.Option("--json", help="Print JSON instead of tables")]


def _ledger(path: Path | None) -> Path:
    if path is not None:
        return path
    settings = AuditSettings()
    found = settings.ledger_file
    embedded = broker.embedded_ledger(settings.hub.state_dir)
    if settings.ledger_path is None and not found.exists() and embedded.exists():
        err.print(f"using the ledger of `puente up` on the embedded broker: {embedded}")
        return embedded
    return found


def _asked(path: Path, query: str, key: str | None, answer: Callable[[Ledger], _T]) -> _T:
    """``answer`` over the ledger at ``path``, logged in its query log like the API's.

    An operator's question is oversight's business as much as an institution's: it
    is logged (as ``cli:<account>``, role ``operator``) before the answer is shown,
    and not answered when it cannot be logged.
    """

    def run() -> _T:
        with reading(path) as opened:
            return answer(opened)

    return querylog.logged(path, querylog.Asker(_operator(), "operator"), query, key, run)


def _operator() -> str:
    try:
        return f"cli:{getpass.getuser()}"
    except (OSError, KeyError):  # no account name for this uid (some containers)
        return f"cli:uid-{os.getuid()}"


def _print_json(model: BaseModel) -> None:
    typer.echo(json.dumps(model.model_dump(mode="json"), indent=2, ensure_ascii=False))


def _time(value: str | None, option: str) -> datetime | None:
    if value is None:
        return None
    try:
        parsed = datetime.fromisoformat(value)
    except ValueError as e:
        raise QueryError(f"{option} is not an RFC 3339 time: {value[:40]!r}") from e
    if parsed.tzinfo is None:
        raise QueryError(f"{option} needs an offset, e.g. {value[:19]}Z")
    return parsed


@app.command()
def verify(
    *,
    ledger: LedgerOption = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            help="Pinned public key file (PEM or base64 raw, one key per file); repeat "
            "for several. Default: PUENTE_AUDIT_VERIFY_KEY(_FILE), else the public half "
            "of the configured signing key. Keys stored in the ledger are never trusted.",
        ),
    ] = None,
    witness_file: Annotated[
        Path | None,
        typer.Option(
            "--witness",
            metavar="FILE",
            help="Witness file of signed heads (default: PUENTE_AUDIT_WITNESS_FILE)",
        ),
    ] = None,
    against_kafka: Annotated[
        bool,
        typer.Option(
            "--against-kafka",
            help="Also read the audit topic to its end: fail on records the ledger "
            "skipped or lacks; and read the checkpoint topic as anchors",
        ),
    ] = False,
    bootstrap_servers: Annotated[
        str | None,
        typer.Option(
            "--bootstrap-servers",
            metavar="HOST:PORT",
            help="Kafka to read the checkpoint topic (and with --against-kafka the "
            "audit topic) from (default: PUENTE_KAFKA_BOOTSTRAP_SERVERS)",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Check chain, signatures (pinned keys) and the heads kept outside the ledger.

    Exits 1 on any tampering, truncation, rollback or fork.
    """
    settings = AuditSettings()
    path = _ledger(ledger)
    pinned = pinned_keys(settings, public_key or ())
    anchors, rotations, notes = _witness(witness_file or settings.witness_file)
    topic = None
    kafka = _kafka(settings, bootstrap_servers, required=against_kafka)
    if kafka is not None:
        catalog = Catalog.load(settings.hub.schemas_dir)
        records, points = asyncio.run(
            outside.both(kafka, settings.topic, settings.checkpoint_topic)
        )
        anchors += outside.anchors_on(catalog, points, settings.checkpoint_topic)
        if against_kafka:
            topic = (settings.topic, outside.entries_on(catalog, records))
    result = verify_ledger(path, pinned, anchors, rotations, topic)
    if as_json:
        _print_json(result)
    else:
        for note in notes:
            err.print(note)
        _print_verify(result, path)
    if not result.ok:
        raise typer.Exit(1)


def _witness(path: Path | None) -> tuple[list[Anchor], list[Rotation], list[str]]:
    if path is None:
        return [], [], []
    anchors, rotations, unreadable = witness_anchors(path)
    notes = [
        f"witness {path}: line {n} is not a signed head; ignored" for n in unreadable
    ]
    return anchors, rotations, notes


def _kafka(
    settings: AuditSettings, bootstrap: str | None, *, required: bool
) -> KafkaSettings | None:
    kafka = settings.kafka
    if bootstrap is not None:
        kafka = kafka.model_copy(update={"bootstrap_servers": bootstrap})
    if not kafka.bootstrap_servers:
        if required:
            raise QueryError(
                "--against-kafka needs --bootstrap-servers or "
                "PUENTE_KAFKA_BOOTSTRAP_SERVERS"
            )
        return None
    return kafka


def _print_verify(result: VerifyResult, path: Path) -> None:
    out.print(f"ledger {result.ledger_id} ({path})")
    out.print(
        f"entries: {result.entries}, head seq {result.head_seq}, hash {result.head_hash}"
    )
    out.print(
        f"checkpoints: {result.checkpoints}, last at seq {result.last_checkpoint_seq}; "
        f"{result.uncovered_entries} entries after it are not signed yet"
    )
    for key in result.keys:
        out.print(f"key {key.key_id} (pinned): {key.public_key}")
    newest = result.newest_anchor
    if newest is not None:
        out.print(
            f"anchored: {result.anchors} signed heads outside the ledger, the newest at "
            f"seq {newest.seq} ({newest.where}, signed {newest.signed_at})"
        )
    else:
        out.print(
            "not anchored: no signed head outside the ledger was found (give --witness "
            "or --bootstrap-servers); a cut-back ledger cannot be told from a short one"
        )
    if result.against_kafka:
        out.print("compared with the audit topic read to its end")
    if result.ok:
        out.print(
            "[green]OK[/]: chain intact, every signature valid with the pinned keys"
        )
        return
    first = result.first_problem
    assert first is not None
    out.print(f"[red]TAMPERED[/]: first broken: {first.on} {first.seq}: {first.kind}")
    out.print(f"  {first.detail}")
    for problem in result.problems[1:_SHOWN_PROBLEMS]:
        out.print(f"  also {problem.on} {problem.seq}: {problem.kind}: {problem.detail}")
    if len(result.problems) > _SHOWN_PROBLEMS:
        out.print(f"  ... {len(result.problems) - _SHOWN_PROBLEMS} more (see --json)")


@app.command("public-key")
def public_key_command(ledger: LedgerOption = None) -> None:
    """Print the public keys stored in this ledger, as PEM.

    To pin a key, take it from the signing key's owner, not from the ledger: this
    shows what the ledger claims, which is for comparing with what was handed over.
    """
    with reading(_ledger(ledger)) as opened:
        keys = opened.signing_keys()
    if not keys:
        raise QueryError("no checkpoint has been signed in this ledger yet")
    for name, raw in sorted(keys.items()):
        typer.echo(f"# key_id {name}")
        typer.echo(public_pem(raw), nl=False)


@app.command("who-received")
def who_received(
    event_id: Annotated[str, typer.Argument(help="envelope.event_id (a UUID)")],
    ledger: LedgerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Which institutions received an event, under which rule, view and purpose."""
    result = _asked(
        _ledger(ledger), "who_received", event_id,
        lambda opened: queries.who_received(opened, event_id),
    )  # fmt: skip
    if as_json:
        _print_json(result)
        return
    out.print(_decisions_table(f"event {result.event_id}", result.decisions))
    out.print(f"delivered to: {', '.join(result.recipients) or 'nobody'}")


@app.command()
def received(
    *,
    institution: Annotated[str, typer.Option("--institution", help="Institution id")],
    since: Annotated[str | None, typer.Option(help="From (inclusive), RFC 3339")] = None,
    until: Annotated[str | None, typer.Option(help="To (exclusive), RFC 3339")] = None,
    limit: Annotated[int, typer.Option(min=1, help="At most this many entries")] = (
        queries.DEFAULT_LIMIT
    ),
    ledger: LedgerOption = None,
    as_json: JsonOption = False,
) -> None:
    """What an institution received between two times: counts by type and view."""
    window = _time(since, "--since"), _time(until, "--until")
    result = _asked(
        _ledger(ledger), "received", institution,
        lambda opened: queries.received(opened, institution, *window, limit),
    )  # fmt: skip
    if as_json:
        _print_json(result)
        return
    counts = Table("event type", "view", "deliveries", title=f"{institution} received")
    for count in result.counts:
        counts.add_row(count.event_type, count.view, str(count.count))
    counts.add_row("total", "", str(result.total))
    out.print(counts)
    out.print(_decisions_table("entries", result.entries))
    if result.truncated:
        out.print(f"showing {len(result.entries)} of {result.total}; raise --limit")


@app.command("subject-report")
def subject_report(
    subject_key: Annotated[str, typer.Argument(help="Hub subject key (k1:...)")],
    ledger: LedgerOption = None,
    as_json: JsonOption = False,
) -> None:
    """Every institution that received data about a person: when, why, which fields."""
    result = _asked(
        _ledger(ledger), "subject_report", subject_key,
        lambda opened: queries.subject_report(opened, subject_key),
    )  # fmt: skip
    if as_json:
        _print_json(result)
        return
    table = Table(
        "when", "institution", "event type", "rule", "purpose", "legal basis", "view",
        "fields", title="disclosures about this subject",
    )  # fmt: skip
    for d in result.disclosures:
        table.add_row(
            d.decided_at, d.recipient_institution_id, d.event_type, d.rule_id,
            d.purpose, d.legal_basis, d.view, ", ".join(d.disclosed_fields),
        )  # fmt: skip
    out.print(table)
    if not result.disclosures:
        out.print("no institution received data about this subject key")


def _decisions_table(title: str, decisions: list[queries.Disclosure]) -> Table:
    table = Table(
        "seq", "when", "recipient", "decision", "view", "rule", "purpose", "legal basis",
        title=title,
    )  # fmt: skip
    for d in decisions:
        decision = (
            d.decision
            if d.withheld_reason is None
            else f"{d.decision} ({d.withheld_reason})"
        )
        table.add_row(
            str(d.seq), d.decided_at, d.recipient_institution_id, decision, d.view,
            d.rule_id, d.purpose, d.legal_basis,
        )  # fmt: skip
    return table


credential_app = typer.Typer(
    cls=PuenteGroup,
    help="Credentials of the audit API: oversight (everything) or one institution "
    "(disclosures to itself only). Tokens are shown once and stored hashed.",
    no_args_is_help=True,
)
app.add_typer(credential_app, name="credential")

CredentialsOption = Annotated[
    Path | None,
    typer.Option(
        "--credentials",
        metavar="FILE",
        help="Credential store (default: PUENTE_AUDIT_CREDENTIALS_PATH, else "
        "<state dir>/audit/credentials.sqlite)",
        show_default=False,
    ),
]


def _store(path: Path | None) -> CredentialStore:
    return CredentialStore(path or AuditSettings().credentials_file)


@credential_app.command("create")
def credential_create(
    role: Annotated[Role, typer.Option("--role", help="oversight or institution")],
    institution: Annotated[
        str | None,
        typer.Option("--institution", help="Institution id (role institution only)"),
    ] = None,
    label: Annotated[
        str, typer.Option("--label", help="Who holds it, e.g. 'DPO office'")
    ] = "",
    credentials: CredentialsOption = None,
) -> None:
    """Create a credential and print its token once (store it now; it is not kept)."""
    store = _store(credentials)
    try:
        credential, token = store.create(role, institution, label)
    finally:
        store.close()
    err.print(
        f"credential {credential.id} ({credential.role.value}"
        f"{' ' + credential.institution if credential.institution else ''}); "
        "the token is shown only now:"
    )
    typer.echo(token)


@credential_app.command("list")
def credential_list(
    credentials: CredentialsOption = None, as_json: JsonOption = False
) -> None:
    """Every credential: id, role, institution, label, created, revoked."""
    store = _store(credentials)
    try:
        found = store.all()
    finally:
        store.close()
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(c) for c in found], indent=2))
        return
    table = Table("id", "role", "institution", "label", "created", "revoked")
    for c in found:
        table.add_row(
            c.id, c.role.value, c.institution or "", c.label, c.created_at,
            c.revoked_at or "",
        )  # fmt: skip
    out.print(table)


@credential_app.command("revoke")
def credential_revoke(
    credential_id: Annotated[str, typer.Argument(help="Credential id (see list)")],
    credentials: CredentialsOption = None,
) -> None:
    """Revoke a credential; the audit API refuses it from the next request on."""
    store = _store(credentials)
    try:
        credential = store.revoke(credential_id)
    finally:
        store.close()
    out.print(f"credential {credential.id} revoked at {credential.revoked_at}")


@app.command("query-log")
def query_log(
    ledger: LedgerOption = None,
    limit: Annotated[int, typer.Option(min=1, help="The newest this many")] = 100,
    as_json: JsonOption = False,
) -> None:
    """Who asked the audit API what, and when (the newest questions)."""
    with reading(_ledger(ledger)) as opened:
        asked = querylog.read(opened, limit)
    if as_json:
        typer.echo(json.dumps([dataclasses.asdict(a) for a in asked], indent=2))
        return
    table = Table(
        "when", "credential", "role", "institution", "question", "key", "status"
    )
    for a in asked:
        table.add_row(
            a.asked_at, a.credential_id, a.role, a.institution or "", a.query,
            a.query_key or "", str(a.outcome),
        )  # fmt: skip
    out.print(table)
