"""``puente indicators list / show ID / export ID``: the catalogue and its tables.

``export`` reads the service's counts database and prints the protected tables,
exactly as the gateway serves them: whole periods, at most two crossed dimensions
with their margins, small cells suppressed (and why).
"""

from __future__ import annotations

import asyncio
import json
from datetime import date, timedelta
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.contracts import topics
from services.contracts.errors import PuenteError
from services.indicators.catalogue import Catalogue, Indicator
from services.indicators.counting import covering
from services.indicators.metrics import local_today
from services.indicators.rebuild import differences, rebuild
from services.indicators.settings import IndicatorsSettings, load_catalogue_for
from services.indicators.store import Store
from services.indicators.tables import as_hxl_csv, as_json, publish
from services.runtime.state_cli import (
    RebuildOutOption,
    compare_rebuilt,
    rebuild_target,
    require_kafka,
    state_database,
)

app = typer.Typer(help="Indicators: the catalogue and its disclosure-controlled tables.")
out = Console(highlight=False, soft_wrap=True)
err = Console(stderr=True, highlight=False)
EMBEDDED_DB = "indicators.sqlite"  # beside the other state of a `puente up` run

JsonOption = Annotated[bool, typer.Option("--json", help="JSON instead of a table")]
DbOption = Annotated[
    Path | None, typer.Option("--db", help="Counts database (default: the service's)")
]


class Format(StrEnum):
    """Export formats."""

    JSON = "json"
    HXL_CSV = "hxl-csv"


def _catalogue() -> Catalogue:
    try:
        return load_catalogue_for(IndicatorsSettings())[2]
    except PuenteError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e


def _indicator(ident: str) -> Indicator:
    try:
        return _catalogue().get(ident)
    except PuenteError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e


@app.command("list")
def list_command(as_json_: JsonOption = False) -> None:
    """Every indicator: id, working group, event type, period, title."""
    catalogue = _catalogue()
    if as_json_:
        rows = [_summary(i) for i in catalogue.indicators.values()]
        out.print(json.dumps(rows, ensure_ascii=False, indent=2), markup=False)
        return
    table = Table("id", "working group", "GCM", "period", "title")
    table.columns[0].no_wrap = True
    for i in catalogue.indicators.values():
        table.add_row(i.id, i.working_group, str(i.gcm_objective), i.period, i.title)
    out.print(table)


@app.command("show")
def show_command(
    ident: Annotated[str, typer.Argument(metavar="ID", help="Indicator id")],
    as_json_: JsonOption = False,
) -> None:
    """One indicator: definition, filter, dimensions, threshold, who reads it and how."""
    indicator = _indicator(ident)
    detail = {
        **_summary(indicator),
        "definition": indicator.definition,
        "filter": indicator.filter_text,
        "threshold": indicator.threshold,
        "hxl": indicator.hxl,
        "dimensions": {
            d.id: {
                "label": d.label,
                "field": d.fields[indicator.event_type],
                "hxl": d.hxl,
            }
            for d in indicator.dimensions
        },
        "readers": {r: list(by) for r, by in indicator.reader_dimensions.items()},
    }
    if as_json_:
        out.print(json.dumps(detail, ensure_ascii=False, indent=2), markup=False)
        return
    out.print(f"[bold]{indicator.id}[/bold]: {indicator.title}")
    for key in ("definition", "working_group", "gcm_objective", "event_type", "period"):
        out.print(f"  {key}: {detail[key]}", markup=False)
    out.print(f"  filter: {indicator.filter_text or '(every event)'}", markup=False)
    small = indicator.threshold - 1
    out.print(
        f"  threshold: {indicator.threshold} (cells of 1 to {small} are suppressed)"
    )
    out.print(f"  count column: {indicator.hxl}", markup=False)
    table = Table("dimension", "field", "HXL")
    for d in indicator.dimensions:
        table.add_row(d.id, d.fields[indicator.event_type], d.hxl)
    out.print(table)
    readers = Table("reader", "may break down by")
    for reader, by in indicator.reader_dimensions.items():
        readers.add_row(reader, ", ".join(by) or "(totals only)")
    out.print(readers)


def _summary(indicator: Indicator) -> dict[str, object]:
    return {
        "id": indicator.id,
        "title": indicator.title,
        "working_group": indicator.working_group,
        "gcm_objective": indicator.gcm_objective,
        "event_type": indicator.event_type,
        "period": indicator.period,
    }


def database(path: Path | None, settings: IndicatorsSettings) -> Path:
    """The database to read: given, the service's, or the one `puente up` writes."""
    return state_database(
        path, settings, embedded_name=EMBEDDED_DB, what="indicators", err=err
    )


@app.command("export")
def export_command(  # noqa: PLR0917 - one parameter per option
    ident: Annotated[str, typer.Argument(metavar="ID", help="Indicator id")],
    fmt: Annotated[
        Format, typer.Option("--format", help="json or hxl-csv (CSV with HXL hashtags)")
    ] = Format.JSON,
    start: Annotated[
        str | None,
        typer.Option(
            "--from", metavar="YYYY-MM-DD", help="First day [default: 90 days ago]"
        ),
    ] = None,
    end: Annotated[
        str | None,
        typer.Option("--to", metavar="YYYY-MM-DD", help="Last day [default: today]"),
    ] = None,
    by: Annotated[
        list[str] | None,
        typer.Option("--by", metavar="DIMENSION", help="Break down by (at most twice)"),
    ] = None,
    reader: Annotated[
        str | None,
        typer.Option(
            "--as", metavar="ID", help="Only the breakdowns this reader may use"
        ),
    ] = None,
    rounding: Annotated[
        int | None,
        typer.Option(
            "--round", metavar="N", help="Round published counts to multiples of N"
        ),
    ] = None,
    db: DbOption = None,
    output: Annotated[
        Path | None, typer.Option("--out", help="Write to this file instead of stdout")
    ] = None,
    provisional: Annotated[
        bool,
        typer.Option(
            "--provisional",
            help="Also periods not released yet, from the live counts (operators only:"
            " never hand these to a reader)",
        ),
    ] = False,
) -> None:
    """Print (or write) an indicator's protected tables as JSON or HXL CSV.

    Only released periods, as the gateway serves them; the others are listed under
    "pending" with the day they may be released.
    """
    settings = IndicatorsSettings()
    indicator = _indicator(ident)
    dims = [d for item in by or [] for d in item.split(",") if d]
    try:
        first, last = _range(start, end)
        store = Store.open(database(db, settings), readonly=True)
        try:
            counts = store.counts(
                indicator.id,
                settings.release_after_days,
                live=provisional,
                days=covering(first, last, indicator.period),
            )
        finally:
            store.close()
        publication = publish(
            indicator, counts, first, last, dims, reader=reader, rounding=rounding
        )
    except (PuenteError, ValueError) as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e
    if reader is not None and reader not in indicator.readers:
        err.print(f"error: {reader} may not read {indicator.id}")
        raise typer.Exit(1)
    text = (
        json.dumps(as_json(publication), ensure_ascii=False, indent=2) + "\n"
        if fmt is Format.JSON
        else as_hxl_csv(publication)
    )
    if output is not None:
        output.write_text(text, encoding="utf-8")
        err.print(f"wrote {output}")
    else:
        typer.echo(text, nl=False)


@app.command("releases")
def releases_command(db: DbOption = None, as_json_: JsonOption = False) -> None:
    """Each indicator: the last day released, and late changes since.

    A period is released (its tables frozen and published) the configured number of
    days after it ends (PUENTE_INDICATORS_RELEASE_AFTER_DAYS), once the service has
    counted every delivery up to then. Late events change only the live counts.
    """
    settings = IndicatorsSettings()
    catalogue = _catalogue()
    try:
        store = Store.open(database(db, settings), readonly=True)
        try:
            marks, late = store.released_through(), store.late_events()
        finally:
            store.close()
    except PuenteError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e
    rows = [
        {
            "id": ident,
            "period": i.period,
            "released_through": marks[ident].isoformat() if ident in marks else None,
            "late": late.get(ident, 0),
        }
        for ident, i in catalogue.indicators.items()
    ]
    if as_json_:
        out.print(json.dumps(rows, indent=2), markup=False)
        return
    table = Table("id", "period", "released through", "late changes")
    for row in rows:
        table.add_row(
            str(row["id"]),
            str(row["period"]),
            str(row["released_through"] or "not yet"),
            str(row["late"]),
        )
    out.print(table)


@app.command("rebuild")
def rebuild_command(out_path: RebuildOutOption = None, db: DbOption = None) -> None:
    """Re-read the delivery topics from the beginning into a fresh database.

    Then compare it with the live database; exit 1 if any indicator differs. The
    releases (what was published) are taken over from the live database when it is
    there. Stop the service and move the rebuilt file into place to replace it.
    """
    settings = IndicatorsSettings()
    require_kafka(settings, err)
    live = database(db, settings)
    target = rebuild_target(live, out_path)
    try:
        catalog, policy, catalogue = load_catalogue_for(settings)
        delivered = policy.receive_rights.get(settings.recipient, frozenset())
        names = [topics.outbound(settings.recipient, t) for t in sorted(delivered)]
        done = asyncio.run(
            rebuild(
                settings.kafka, catalog, catalogue, names, target,
                releases_from=live if live.exists() else None,
            )
        )  # fmt: skip
    except PuenteError as e:
        err.print(f"error: {e}")
        raise typer.Exit(1) from e
    # Plain lines (paths are not wrapped): scripts read them.
    typer.echo(
        f"rebuilt {target}: {done.records} record(s), {done.counted} counted, "
        f"{done.duplicates} read again, {done.unreadable} unreadable"
    )
    differ = compare_rebuilt(
        live, target, _open_readonly, lambda a, b: differences(a, b, catalogue)
    )
    if differ is None:
        return
    if differ:
        err.print(f"{len(differ)} indicator(s) differ from {live}: {', '.join(differ)}")
        raise typer.Exit(1)
    typer.echo(f"the rebuilt counts match {live}")


def _open_readonly(path: Path) -> Store:
    return Store.open(path, readonly=True)


def _range(start: str | None, end: str | None) -> tuple[date, date]:
    try:
        last = date.fromisoformat(end) if end else local_today()
        first = date.fromisoformat(start) if start else last - timedelta(days=90)
    except ValueError as e:
        raise ValueError(f"dates are YYYY-MM-DD: {e}") from e
    return first, last
