"""``puente policy check / explain``: the access policy and what it discloses."""

from __future__ import annotations

from collections import Counter
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.cli.options import (
    PolicyDir,
    Recipient,
    SchemasDir,
    member_or_exit,
    policy_or_exit,
)
from services.contracts.ids import EVENT_TYPES
from services.policy.loader import tree_of
from services.policy.model import Rule
from services.policy.projection import REKEYED_VIEWS

app = typer.Typer(
    help="The access policy (deploy/policy/): check it, explain what it discloses.",
    no_args_is_help=True,
)
out = Console(highlight=False, soft_wrap=True)


@app.command()
def check(policy_dir: PolicyDir = None, schemas_dir: SchemasDir = None) -> None:
    """Load and validate the policy against the schemas; print a summary."""
    policy = policy_or_exit(policy_dir, schemas_dir)
    members = policy.institutions.values()
    silent = sorted(i.id for i in members if not i.stream)
    per_type = Counter(rule.event_type for rule in policy.rules)
    typer.echo(f"ok: policy {policy.version}")
    typer.echo(
        f"institutions: {len(policy.institutions)} ({len(policy.publish_rights)} "
        f"publish; no stream: {', '.join(silent) or 'none'})"
    )
    for event_type in EVENT_TYPES:
        typer.echo(f"rules for {event_type}: {per_type.get(event_type, 0)}")
    typer.echo(f"aggregate-only grants: {len(policy.aggregates)}")


@app.command()
def explain(
    recipient: Recipient,
    event_type: Annotated[
        str | None, typer.Option("--event-type", help="Only this event type")
    ] = None,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Per rule: condition, view, purpose, legal basis and the field paths delivered."""
    policy = policy_or_exit(policy_dir, schemas_dir)
    member = member_or_exit(policy, recipient)
    if event_type is not None and event_type not in EVENT_TYPES:
        typer.echo(
            f"error: unknown event type {event_type[:64]!r}; "
            f"expected one of {', '.join(EVENT_TYPES)}",
            err=True,
        )
        raise typer.Exit(1)
    out.print(f"[bold]{member.id}[/bold] — {member.name}  (policy {policy.version})")
    if member.note:
        out.print(member.note)
    rules = policy.rules_for(recipient, event_type)
    if not rules:
        scope = f" of {event_type}" if event_type else ""
        reason = "it gets no stream" if not member.stream else "no rule grants any"
        out.print(f"No per-record deliveries{scope}: {reason}.")
    for rule in rules:
        out.print(_rule_table(rule))
    for grant in policy.aggregates:
        if grant.recipient == recipient and (
            event_type is None or event_type in grant.event_types
        ):
            by = f" by {', '.join(grant.by)}" if grant.by else ""
            out.print(
                f"aggregates only: {', '.join(grant.event_types)}{by} — "
                f"{grant.purpose} / {grant.legal_basis}. {grant.note}"
            )


def _linkable(rule: Rule) -> frozenset[str]:
    """The identifier paths a re-keyed view replaces with the recipient's own."""
    if rule.view not in REKEYED_VIEWS:
        return frozenset()
    tree = tree_of(rule.latest.source)
    return frozenset(p for p, node in tree.nodes.items() if node.linkable)


def _rule_table(rule: Rule) -> Table:
    projection = rule.latest
    table = Table(
        title=f"rule {rule.id}  ({rule.source_file})",
        title_justify="left",
        show_header=False,
        box=None,
        padding=(0, 2),
    )
    table.add_column(style="bold")
    table.add_column(overflow="fold")
    consent = "not required"
    if rule.consent_scopes:
        consent = ", ".join(rule.consent_scopes) + " (consent obtained, not withdrawn)"
        if rule.consent_override:
            consent += "; or a recorded consent override with its reason"
    rows = [
        ("event type", rule.event_type),
        ("recipient", rule.recipient_text),
        ("condition", rule.condition.text if rule.condition else "always"),
        ("reads", ", ".join(rule.condition.fields) if rule.condition else "-"),
        ("view", rule.view),
        ("purpose", rule.purpose),
        ("legal basis", rule.legal_basis),
        ("consent", consent),
    ]
    if rule.owner:
        rows.append(("owner", "yes: delivers even when the person limits disclosure"))
    if rule.grants:
        rows.append(("granted", ", ".join(rule.grants)))
    if rule.removes:
        rows.append(("removed", ", ".join(rule.removes)))
    if rule.only:
        rows.append(("only", ", ".join(rule.only)))
    rows.extend(
        (
            "generalised",
            f"{item.path}: {', '.join(sorted(item.keep))} as sent, "
            f"any other value as {item.otherwise}",
        )
        for item in rule.generalise
    )
    rekeyed = [p for p in projection.field_paths if p in _linkable(rule)]
    if rekeyed:
        rows.append(("own ids", "re-keyed for this recipient: " + ", ".join(rekeyed)))
    if rule.note:
        rows.append(("why", rule.note))
    rows.append(
        (
            "schema",
            f"{projection.entry.name} v{projection.entry.version} "
            f"(fingerprint {projection.entry.fingerprint_hex})",
        )
    )
    rows.append(
        (f"fields ({len(projection.field_paths)})", "\n".join(projection.field_paths))
    )
    for key, value in rows:
        table.add_row(key, value)
    return table
