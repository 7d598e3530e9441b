"""``puente schemas``: list, show and check the catalog."""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.options import SchemasDir, load_catalog, schemas_folder
from services.contracts import compat
from services.contracts.catalog import Catalog

app = typer.Typer(
    help="The schema catalog: list, show, check, export.", no_args_is_help=True
)
out = Console(highlight=False, soft_wrap=True)


@app.command("list")
def list_schemas(schemas_dir: SchemasDir = None) -> None:
    """Print every record type with its versions and fingerprints."""
    catalog = load_catalog(schemas_dir)
    table = Table("name", "version", "fingerprint (CRC-64-AVRO, wire order)", "kind")
    for name in catalog.names:
        for entry in catalog.versions(name):
            kind = "event" if entry.is_event else "hub record"
            table.add_row(name, f"v{entry.version}", entry.fingerprint_hex, kind)
    out.print(table)


@app.command()
def show(
    event_type: Annotated[str, typer.Argument(help="Record type, e.g. return_arrival")],
    version: Annotated[int | None, typer.Option(help="Version [default: latest]")] = None,
    canonical: Annotated[
        bool, typer.Option("--canonical", help="Print the Parsing Canonical Form instead")
    ] = False,
    schemas_dir: SchemasDir = None,
) -> None:
    """Print the self-contained schema JSON (named types defined at first use)."""
    entry = load_catalog(schemas_dir).get(event_type, version)
    typer.echo(entry.canonical if canonical else json.dumps(entry.schema, indent=2))


@app.command()
def check(
    schemas_dir: SchemasDir = None,
    update_lock: Annotated[
        bool,
        typer.Option(
            "--update-lock", help=f"Record current fingerprints in {compat.LOCK_FILE}"
        ),
    ] = False,
) -> None:
    """Prove later versions read earlier data (BACKWARD) and nothing published changed."""
    folder = schemas_folder(schemas_dir)
    catalog = Catalog.load(folder)
    lock_path = folder / compat.LOCK_FILE
    findings = compat.check(catalog, compat.read_lock(lock_path))
    for finding in findings:
        typer.echo(f"FAIL {finding.name}: {finding.message}", err=True)
    if findings:
        raise typer.Exit(1)
    if update_lock:
        lock = compat.current_lock(catalog)
        lock_path.write_text(json.dumps(lock, indent=2, sort_keys=True) + "\n", "utf-8")
    counts = ", ".join(f"{n} v1-v{catalog.get(n).version}" for n in catalog.names)
    typer.echo(f"ok: {counts} are BACKWARD compatible and match {compat.LOCK_FILE}")
