"""``puente audit``: verify the ledger and ask it who received what."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Final

import typer
from pydantic import BaseModel
from rich.console import Console
from rich.table import Table

from services.audit import queries
from services.audit.api import VerifyResult, reading, verify_ledger
from services.audit.keys import key_id, parse_public_key, public_pem, read_key_file
from services.audit.queries import QueryError
from services.audit.settings import AuditSettings
from services.runtime import hub
from services.runtime.cli import PuenteGroup

_SHOWN_PROBLEMS: Final = 20


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
    embedded = hub.embedded_ledger(settings.hub.state_dir)
    if settings.ledger_path is None and not found.exists() and embedded.exists():
        err.print(f"using the ledger of `puente up` on the embedded broker: {embedded}")
        return embedded
    return found


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
    ledger: LedgerOption = None,
    public_key: Annotated[
        list[Path] | None,
        typer.Option(
            "--public-key",
            metavar="FILE",
            help="Pinned public key file (PEM or base64 raw, one key per file); repeat "
            "for rotated keys. "
            "Checkpoints must verify with one of these instead of the stored keys.",
        ),
    ] = None,
    as_json: JsonOption = False,
) -> None:
    """Recompute the hash chain and check every checkpoint; exit 1 on any tampering."""
    pinned = None
    if public_key:
        raws = [parse_public_key(read_key_file(p)) for p in public_key]
        pinned = {key_id(raw): raw for raw in raws}
    result = verify_ledger(_ledger(ledger), pinned)
    if as_json:
        _print_json(result)
    else:
        _print_verify(result, _ledger(ledger))
    if not result.ok:
        raise typer.Exit(1)


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
        origin = "pinned" if result.pinned else "stored in the ledger"
        out.print(f"key {key.key_id} ({origin}): {key.public_key}")
    if result.ok:
        out.print("[green]OK[/]: chain intact, every checkpoint signature valid")
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
    """Print the public keys that signed this ledger's checkpoints, as PEM (to pin)."""
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
    with reading(_ledger(ledger)) as opened:
        result = queries.who_received(opened, event_id)
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
    with reading(_ledger(ledger)) as opened:
        result = queries.received(opened, institution, *window, limit)
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
    with reading(_ledger(ledger)) as opened:
        result = queries.subject_report(opened, subject_key)
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
