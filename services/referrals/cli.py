"""``puente referrals list / show / rebuild``: the tracker's state for operators.

Only ids, symbols and times are shown (who referred to whom, status, urgency,
deadlines, history): the tracker never holds personal data. Times are shown in
El Salvador's time zone.
"""

from __future__ import annotations

import asyncio
import json
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any, Literal
from zoneinfo import ZoneInfo

import typer
from rich.console import Console
from rich.table import Table

from services.contracts.errors import PuenteError
from services.referrals.app import tracker_catalog
from services.referrals.errors import NotTrackedError, ReferralsError
from services.referrals.rebuild import differences, rebuild
from services.referrals.settings import ReferralsSettings
from services.referrals.store import Store, Tracked
from services.runtime.state_cli import (
    RebuildOutOption,
    compare_rebuilt,
    rebuild_target,
    require_kafka,
    state_database,
)

app = typer.Typer(help="Referrals between institutions: state, history, deadlines.")
out = Console(highlight=False)
err = Console(stderr=True, highlight=False)
LOCAL = ZoneInfo("America/El_Salvador")
EMBEDDED_DB = "referrals.sqlite"
DbOption = Annotated[
    Path | None, typer.Option("--db", help="Tracker database (default: the service's)")
]
JsonOption = Annotated[bool, typer.Option("--json", help="JSON lines instead of a table")]


def database(path: Path | None) -> Path:
    """The database to read: given, the service's, or the one `puente up` writes."""
    return state_database(
        path, ReferralsSettings(), embedded_name=EMBEDDED_DB, what="tracker", err=err
    )


def _open_readonly(path: Path) -> Store:
    return Store.open(path, readonly=True)


def _open(path: Path | None) -> Store:
    try:
        return Store.open(database(path), readonly=True)
    except PuenteError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e


def local(at: datetime | None) -> str:
    """``at`` in El Salvador time, to the minute ('' for None)."""
    return "" if at is None else at.astimezone(LOCAL).strftime("%Y-%m-%d %H:%M")


def selected(
    tracked: list[Tracked],
    institution: str | None,
    role: Literal["sent", "received"] | None,
    status: str | None,
    overdue: bool,
) -> list[Tracked]:
    """The referrals that pass the filters."""
    chosen = []
    for t in tracked:
        r = t.referral
        if institution is not None:
            sent, received = r.referring == institution, r.receiving == institution
            if (role == "sent" and not sent) or (role == "received" and not received):
                continue
            if role is None and not (sent or received):
                continue
        if status is not None and r.status != status.upper():
            continue
        if overdue and t.overdue is None:
            continue
        chosen.append(t)
    return chosen


def summary(t: Tracked) -> dict[str, Any]:
    """A referral as JSON: ids, symbols and times only."""
    r = t.referral
    return {
        "referral_id": r.referral_id,
        "referring_institution_id": r.referring,
        "receiving_institution_id": r.receiving,
        "status": r.status,
        "urgency": r.urgency,
        "service_group": r.service_group,
        "sent_at": r.sent_at.isoformat(),
        "acknowledged_at": r.acknowledged_at.isoformat() if r.acknowledged_at else None,
        "updated_at": r.updated_at.isoformat(),
        "overdue": None
        if t.overdue is None
        else {
            "stage": t.overdue.stage,
            "level": t.overdue.level,
            "due_at": t.overdue.due_at.isoformat(),
        },
    }


@app.command("list")
def list_command(  # noqa: PLR0917 - one parameter per option
    institution: Annotated[
        str | None,
        typer.Option("--institution", help="Only referrals it sent or received"),
    ] = None,
    role: Annotated[
        str | None, typer.Option("--role", help="sent or received (with --institution)")
    ] = None,
    status: Annotated[str | None, typer.Option("--status", help="e.g. SENT")] = None,
    overdue: Annotated[bool, typer.Option("--overdue", help="Only overdue ones")] = False,
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """Referrals between institutions, oldest first."""
    if role not in (None, "sent", "received"):
        raise typer.BadParameter("--role is sent or received")
    if role is not None and institution is None:
        raise typer.BadParameter("--role needs --institution")
    store = _open(db)
    try:
        chosen = selected(store.all(), institution, role, status, overdue)  # type: ignore[arg-type]
    finally:
        store.close()
    if as_json:
        for t in chosen:
            typer.echo(json.dumps(summary(t)))
        return
    table = Table(title=f"{len(chosen)} referral(s)")
    # The id in full: it is what `show` takes.
    table.add_column("referral", no_wrap=True)
    for name in ("from", "to", "urgency", "status", "received", "overdue"):
        table.add_column(name)
    for t in chosen:
        r = t.referral
        late = "" if t.overdue is None else f"{t.overdue.stage} L{t.overdue.level}"
        table.add_row(
            r.referral_id, r.referring, r.receiving, r.urgency, r.status,
            local(r.sent_at), late,
        )  # fmt: skip
    out.print(table)


@app.command()
def show(
    referral_id: Annotated[str, typer.Argument(help="The referral's id")],
    db: DbOption = None,
    as_json: JsonOption = False,
) -> None:
    """One referral: its state, every transition with time and institution, notices."""
    store = _open(db)
    try:
        tracked = store.get(referral_id)
        if tracked is None:
            error = NotTrackedError(f"no referral {referral_id} is tracked")
            err.print(f"error: {error}")
            raise typer.Exit(1) from error
        history, notices = store.history(referral_id), store.notices(referral_id)
        waiting = store.waiting(referral_id)
        sends = store.sends(referral_id)
    finally:
        store.close()
    if as_json:
        document = summary(tracked) | {
            "history": [
                {
                    "occurred_at": s.occurred_at.isoformat(),
                    "institution": s.institution,
                    "lifecycle_event": s.lifecycle_event,
                    "status": s.status,
                    "outcome": s.outcome,
                    "reason": s.reason,
                }
                for s in history
            ],
            "waiting": [
                {
                    "occurred_at": w.occurred_at.isoformat(),
                    "institution": w.source,
                    "lifecycle_event": w.lifecycle_event,
                    "previous_status": w.previous_status,
                }
                for w in waiting
            ],
            "notices": [
                {
                    "recipient": n.recipient,
                    "role": n.role,
                    "stage": n.stage,
                    "level": n.level,
                }
                for n in notices
            ],
            "published": [
                {
                    "event_id": event_id,
                    "topic": topic,
                    "sent_at": None if sent is None else sent.isoformat(),
                }
                for event_id, topic, sent in sends
            ],
        }
        typer.echo(json.dumps(document, indent=2))
        return
    r = tracked.referral
    out.print(
        f"referral {r.referral_id}: {r.referring} → {r.receiving}, {r.urgency}, "
        f"{r.service_group}, [bold]{r.status}[/bold]"
    )
    if tracked.overdue is not None:
        out.print(
            f"[red]overdue[/red]: {tracked.overdue.stage} was due "
            f"{local(tracked.overdue.due_at)} (escalation level {tracked.overdue.level})"
        )
    table = Table("time (El Salvador)", "institution", "event", "status", "outcome")
    for s in history:
        outcome = s.outcome if s.reason is None else f"{s.outcome}: {s.reason}"
        table.add_row(
            local(s.occurred_at), s.institution, s.lifecycle_event, s.status, outcome
        )
    out.print(table)
    for w in waiting:
        out.print(
            f"waiting: {w.lifecycle_event} from {w.source} at {local(w.occurred_at)} "
            f"(it leaves {w.previous_status}; read before the event it follows)"
        )
    for n in notices:
        out.print(
            f"notice referral_overdue ({n.stage}, level {n.level}) to {n.recipient} "
            f"({n.role}) at {local(n.issued_at)}"
        )
    for event_id, topic, sent in sends:
        when = "waiting to be sent" if sent is None else f"sent {local(sent)}"
        out.print(f"published as the hub: {topic} event {event_id}, {when}")


@app.command("rebuild")
def rebuild_command(out_path: RebuildOutOption = None, db: DbOption = None) -> None:
    """Re-read the tracker's topic from the beginning into a fresh database.

    Then compare it with the live database; exit 1 if any referral differs. Stop the
    service and move the rebuilt file into place to replace the live state.
    """
    settings = ReferralsSettings()
    require_kafka(settings, err)
    live = database(db)
    target = rebuild_target(live, out_path)
    try:
        done = asyncio.run(
            rebuild(settings.kafka, tracker_catalog(settings), settings.topic, target)
        )
    except ReferralsError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e
    # Plain lines (paths are not wrapped): scripts read them.
    typer.echo(
        f"rebuilt {target}: {done.records} record(s), {done.applied} applied, "
        f"{done.refused} refused, {done.unreadable} unreadable"
    )
    differ = compare_rebuilt(live, target, _open_readonly, differences)
    if differ is None:
        return
    if differ:
        err.print(
            f"{len(differ)} referral(s) differ from {live}: {', '.join(differ[:20])}"
        )
        raise typer.Exit(1)
    typer.echo(f"the rebuilt state matches {live}")
