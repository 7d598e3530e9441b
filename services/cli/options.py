"""The options several command groups share, defined once, and what they load."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.policy import Institution, Policy, load_policy
from services.runtime.settings import HubSettings

SchemasDir = Annotated[
    Path | None,
    typer.Option(
        "--schemas-dir", help="Schema folder [default: PUENTE_SCHEMAS_DIR or ./schemas]"
    ),
]
PolicyDir = Annotated[
    Path | None,
    typer.Option("--policy-dir", help="Policy folder [default: PUENTE_POLICY_DIR]"),
]
Recipient = Annotated[
    str, typer.Option("--recipient", help="Institution id, e.g. conapina")
]


def schemas_folder(schemas_dir: Path | None) -> Path:
    """``--schemas-dir`` if given, else the configured folder."""
    return schemas_dir or HubSettings().schemas_dir


def load_catalog(schemas_dir: Path | None) -> Catalog:
    """The catalog from ``--schemas-dir`` or the configured folder."""
    return Catalog.load(schemas_folder(schemas_dir))


def load_hub_policy(policy_dir: Path | None, schemas_dir: Path | None) -> Policy:
    """The access policy from ``--policy-dir``/``--schemas-dir`` or the settings."""
    catalog = load_catalog(schemas_dir)
    return load_policy(policy_dir or HubSettings().policy_dir, catalog)


def policy_or_exit(policy_dir: Path | None, schemas_dir: Path | None) -> Policy:
    """The policy, or exit 1 with the precise error on stderr."""
    try:
        return load_hub_policy(policy_dir, schemas_dir)
    except PuenteError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e


def member_or_exit(policy: Policy, recipient: str) -> Institution:
    """The institution ``recipient``, or exit 1 naming the ones the policy knows."""
    member = policy.institutions.get(recipient)
    if member is None:
        typer.echo(
            f"error: unknown institution {recipient[:64]!r}; "
            f"known: {', '.join(sorted(policy.institutions))}",
            err=True,
        )
        raise typer.Exit(1)
    return member
