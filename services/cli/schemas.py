"""``puente schemas``: list, show and check the catalog; export what a recipient needs."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.options import (
    PolicyDir,
    Recipient,
    SchemasDir,
    load_catalog,
    member_or_exit,
    policy_or_exit,
    schemas_folder,
)
from services.contracts import asyncapi, compat, schema_ids
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import PuenteError
from services.policy import Policy, load_policy
from services.runtime.settings import HubSettings, TopicSettings

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
    event_type: Annotated[
        str | None, typer.Argument(help="Record type, e.g. return_arrival")
    ] = None,
    *,
    version: Annotated[int | None, typer.Option(help="Version [default: latest]")] = None,
    fingerprint: Annotated[
        str | None,
        typer.Option(
            "--fingerprint",
            help="Find the schema by fingerprint instead: ce_dataschema's URN, 16 hex "
            "digits as fastavro prints them, Java's long, or the avro library's value "
            "(projected schemas of the policy included)",
        ),
    ] = None,
    canonical: Annotated[
        bool, typer.Option("--canonical", help="Print the Parsing Canonical Form instead")
    ] = False,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Print the self-contained schema JSON (named types defined at first use)."""
    if (event_type is None) == (fingerprint is None):
        typer.echo("error: name a record type or give --fingerprint, not both", err=True)
        raise typer.Exit(2)
    if fingerprint is not None:
        entry = _by_fingerprint(fingerprint, policy_dir, schemas_dir)
    else:
        entry = load_catalog(schemas_dir).get(str(event_type), version)
    typer.echo(entry.canonical if canonical else json.dumps(entry.schema, indent=2))


def _by_fingerprint(
    text: str, policy_dir: Path | None, schemas_dir: Path | None
) -> SchemaEntry:
    """The catalog or projected schema ``text`` names; exit 1 with why not."""
    try:
        # Loading the policy registers its projected schemas (what deliveries use).
        catalog = load_catalog(schemas_dir)
        load_policy(policy_dir or HubSettings().policy_dir, catalog)
        return schema_ids.find(catalog, text)
    except PuenteError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


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


@app.command("export")
def export_command(
    recipient: Recipient,
    out_dir: Annotated[
        Path, typer.Option("--out", help="Folder to write the .avsc files into")
    ],
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Write the projected .avsc files a recipient needs to decode its deliveries."""
    policy = policy_or_exit(policy_dir, schemas_dir)
    member_or_exit(policy, recipient)
    found = policy.projections_for(recipient)
    if not found:
        typer.echo(f"{recipient} receives no per-record deliveries; nothing to export")
        return
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        lines = [
            f"# Schemas for {recipient} (policy {policy.version})",
            "",
            "Deliveries on hub.out.<recipient>.<event_type> are Avro single-object "
            "encoded; the fingerprint in each message names one of these schemas.",
            "",
        ]
        index: dict[str, str] = {}
        for projection, rules in found:
            entry = projection.entry
            name = f"{entry.name}.v{entry.version}.avsc"
            text = json.dumps(entry.schema, indent=2, ensure_ascii=False) + "\n"
            (out_dir / name).write_text(text, encoding="utf-8")
            index[entry.fingerprint_hex] = name
            served = ", ".join(f"{r.id} ({r.view})" for r in rules)
            lines.append(
                f"- `{name}` (fingerprint {entry.fingerprint_hex}): rule {served}"
            )
            typer.echo(f"wrote {out_dir / name}")
        lines += [
            "",
            "`index.json` maps each fingerprint (16 hex digits, wire order: the 8 "
            "bytes after C3 01 in a value, and what ce_dataschema names) to its file. "
            "Libraries whose own fingerprint differs (the Apache avro Python library, "
            "for schemas with logical types) look schemas up there.",
        ]
        (out_dir / "README.md").write_text("\n".join(lines) + "\n", encoding="utf-8")
        index_text = json.dumps(index, indent=2, sort_keys=True) + "\n"
        (out_dir / "index.json").write_text(index_text, encoding="utf-8")
    except OSError as e:
        typer.echo(f"error: cannot write to {out_dir}: {e.strerror}", err=True)
        raise typer.Exit(1) from e


@app.command("asyncapi")
def asyncapi_command(
    recipient: Annotated[
        str | None,
        typer.Option(
            "--recipient",
            help="Only what this institution publishes and receives (its projected "
            "schemas) [default: the whole hub]",
        ),
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="JSON instead of YAML")] = False,
    out_file: Annotated[
        Path | None, typer.Option("--out", help="Write to this file [default: stdout]")
    ] = None,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Print the AsyncAPI 3.0 document of the hub's topics (from catalog and policy)."""
    catalog = load_catalog(schemas_dir)
    try:
        policy = load_policy(policy_dir or HubSettings().policy_dir, catalog)
    except PuenteError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    if recipient is not None:
        member_or_exit(policy, recipient)
    document = asyncapi.document(hub_shape(policy, catalog), recipient)
    text = (
        json.dumps(document, indent=2, ensure_ascii=False) + "\n"
        if as_json
        else asyncapi.to_yaml(document)
    )
    if out_file is None:
        typer.echo(text, nl=False)
        return
    try:
        out_file.write_text(text, encoding="utf-8")
    except OSError as e:
        typer.echo(f"error: cannot write {out_file}: {e.strerror}", err=True)
        raise typer.Exit(1) from e


def hub_shape(policy: Policy, catalog: Catalog) -> asyncapi.Hub:
    """The catalog, rights, projections and partition counts the document describes."""
    deliveries = [
        asyncapi.Delivery(
            member,
            projection.source.name,
            projection.entry,
            tuple(sorted({rule.view for rule in rules})),
        )
        for member in sorted(policy.institutions)
        for projection, rules in policy.projections_for(member)
    ]
    counts = TopicSettings()
    return asyncapi.Hub(
        catalog=catalog,
        publishers=dict(policy.publish_rights),
        deliveries=deliveries,
        partitions={
            "inbound": counts.inbound_partitions,
            "outbound": counts.outbound_partitions,
            "rejected": counts.rejected_partitions,
            "audit": counts.audit_partitions,
            "checkpoints": 1,
        },
    )
