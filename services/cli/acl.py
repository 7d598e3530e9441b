"""``puente acl plan / apply / topics``: Kafka ACLs and topics derived from the policy."""

from __future__ import annotations

import asyncio
import enum
from pathlib import Path
from typing import Annotated

import typer

from services.acl import formats
from services.acl.admin import AclAdminError, KafkaAcls, summarize
from services.acl.diff import HubScope, describe, diff
from services.acl.plan import ServicePrincipals, plan
from services.acl.settings import AclSettings
from services.acl.users import changes, known_users, read_users
from services.audit.settings import AuditSettings
from services.cli.options import PolicyDir, SchemasDir, load_hub_policy
from services.router.settings import RouterSettings
from services.runtime import topic_admin as runtime_topics
from services.runtime.cli import PuenteGroup

app = typer.Typer(
    cls=PuenteGroup,
    help="Kafka ACLs and topics for production, derived from the access policy.",
    no_args_is_help=True,
)


class Format(enum.StrEnum):
    """How `plan` prints the bindings."""

    LINES = "lines"
    KAFKA_ACLS = "kafka-acls"


BootstrapServer = Annotated[
    str,
    typer.Option("--bootstrap-server", help="Written into the kafka-acls.sh commands"),
]
CommandConfig = Annotated[
    str | None,
    typer.Option(
        "--command-config",
        help="Admin client properties file named in the kafka-acls.sh commands",
    ),
]
Out = Annotated[
    Path | None,
    typer.Option("--out", help="Write to this file instead of standard output"),
]


@app.command("plan")
def plan_command(  # noqa: PLR0917 - one parameter per option
    fmt: Annotated[
        Format, typer.Option("--format", help="lines: one binding per line")
    ] = Format.LINES,
    bootstrap_server: BootstrapServer = "localhost:9092",
    command_config: CommandConfig = None,
    out: Out = None,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Print the ACL bindings: `User:<p> <ALLOW|DENY> <op> <type> <pattern> <name>`."""
    bindings = plan(load_hub_policy(policy_dir, schemas_dir), principals())
    if fmt is Format.LINES:
        _emit(formats.lines(bindings), out)
    else:
        connection = formats.AdminConnection(bootstrap_server, command_config)
        _emit(formats.kafka_acls(bindings, connection), out)


@app.command()
def apply(
    dry_run: Annotated[
        bool,
        typer.Option(
            "--dry-run", help="Read the broker's ACLs, print what would be created"
        ),
    ] = False,
    users_dir: Annotated[
        Path | None,
        typer.Option(
            "--users-dir",
            help="Password files, one per SCRAM user to create or update "
            "[default: PUENTE_ACL_USERS_DIR]",
        ),
    ] = None,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Create the planned ACL bindings the broker lacks (PUENTE_KAFKA_*, admin principal).

    Prints `created N, already present M`; --dry-run only reads the broker's bindings.

    With --users-dir, first sets the SCRAM-SHA-512 credential of every user that has a
    password file there (file name = user name).

    Never removes one: hub principals' bindings the plan lacks are warnings (README).

    Needs a broker with an authorizer: the embedded broker has no ACLs.
    """
    settings = AclSettings()
    policy = load_hub_policy(policy_dir, schemas_dir)
    services = principals()
    bindings = plan(policy, services)
    scope = HubScope.of(services, policy.institutions)
    folder = users_dir or settings.users_dir
    users = (
        read_users(folder, known_users(services, policy.institutions)) if folder else {}
    )
    with KafkaAcls(settings.kafka) as acls:
        if users:
            _apply_users(acls, users, dry_run=dry_run)
        change = diff(bindings, acls.describe(), scope)
        for binding in change.stale:
            typer.echo(
                f"warning: not in the plan, remove by hand (README): {describe(binding)}",
                err=True,
            )
        if dry_run:
            for binding in change.missing:
                typer.echo(f"would create {describe(binding)}")
            typer.echo(
                f"would create {len(change.missing)}, already present "
                f"{len(change.present)} (dry run: nothing created)"
            )
            return
        failures = acls.create(change.missing)
    refused = {f.binding for f in failures}
    created = [b for b in change.missing if b not in refused]
    for binding in created:
        typer.echo(f"created {describe(binding)}")
    typer.echo(f"created {len(created)}, already present {len(change.present)}")
    if failures:
        raise AclAdminError(
            f"{len(failures)} of {len(change.missing)} bindings were not created: "
            f"{summarize(failures)}; `puente acl apply --dry-run` lists them"
        )


def _apply_users(acls: KafkaAcls, users: dict[str, str], *, dry_run: bool) -> None:
    """Set each user's SCRAM credential (or say what would be set); fail on a refusal."""
    new, known = changes(users, acls.scram_users(users))
    verb = "would " if dry_run else ""
    for name in new:
        typer.echo(f"{verb}create SCRAM user {name}")
    for name in known:
        typer.echo(f"{verb}update SCRAM user {name}")
    if dry_run:
        typer.echo(f"would create {len(new)} and update {len(known)} SCRAM users")
        return
    refused = acls.set_scram(users)
    typer.echo(
        f"SCRAM users: created {len([n for n in new if n not in refused])}, "
        f"updated {len([n for n in known if n not in refused])}"
    )
    if refused:
        name, reason = next(iter(sorted(refused.items())))
        raise AclAdminError(
            f"{len(refused)} of {len(users)} SCRAM users were not set; "
            f"the first, {name}: {reason}"
        )


@app.command("topics")
def topics_command(
    create: Annotated[
        bool,
        typer.Option(
            "--create",
            help="Create the missing ones on PUENTE_KAFKA_BOOTSTRAP_SERVERS "
            "(needs an admin principal)",
        ),
    ] = False,
    policy_dir: PolicyDir = None,
    schemas_dir: SchemasDir = None,
) -> None:
    """Print every hub topic the policy needs (`<topic> <partitions>`); or create them."""
    settings = AclSettings()
    policy = load_hub_policy(policy_dir, schemas_dir)
    wanted = runtime_topics.plan(
        settings.topics, policy.publish_rights, policy.receive_rights
    )
    if not create:
        _emit(formats.topic_lines(wanted), None)
        return
    created = asyncio.run(
        runtime_topics.create(settings.kafka, wanted, settings.topics.replication_factor)
    )
    typer.echo(f"{len(wanted)} topics planned, {len(created)} created")


def principals() -> ServicePrincipals:
    """The services' principals, groups and audit topics from their settings."""
    acl, router, audit = AclSettings(), RouterSettings(), AuditSettings()
    return ServicePrincipals(
        router=acl.router_principal,
        gateway=acl.gateway_principal,
        audit=acl.audit_principal,
        gateway_reader_prefix=acl.gateway_reader_prefix,
        router_group=router.group_id,
        audit_group=audit.group_id,
        audit_topic=audit.topic,
        checkpoint_topic=audit.checkpoint_topic,
    )


def _emit(text_lines: list[str], out: Path | None) -> None:
    text = "".join(f"{line}\n" for line in text_lines)
    if out is None:
        typer.echo(text, nl=False)
        return
    try:
        out.write_text(text, encoding="utf-8")
    except OSError as e:
        raise typer.BadParameter(f"cannot write {out}: {e.strerror}") from e
