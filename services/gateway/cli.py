"""``puente gateway``: manage the gateway's per-institution bearer credentials."""

from __future__ import annotations

from datetime import datetime
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

from services.contracts.catalog import Catalog
from services.contracts.errors import InvalidIdError, PuenteError
from services.contracts.ids import is_hub_service
from services.gateway.rights import load_rights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import (
    ALL_SCOPES,
    TokenError,
    TokenStore,
    parse_scopes,
)

app = typer.Typer(
    name="gateway", help="The HTTP gateway: credentials.", no_args_is_help=True
)
token_app = typer.Typer(
    name="token",
    help="Create, list and revoke gateway credentials.",
    no_args_is_help=True,
)
app.add_typer(token_app)

StoreOption = Annotated[
    Path | None,
    typer.Option(
        "--store", help="Token database (default: <state_dir>/gateway/tokens.sqlite)"
    ),
]


def _store(path: Path | None) -> TokenStore:
    settings = GatewaySettings()
    return TokenStore(
        path or settings.tokens_file(),
        default_expiry_days=settings.token_expiry_days,
    )


def _fail(message: str) -> typer.Exit:
    Console(stderr=True).print(f"[red]error:[/red] {message}")
    return typer.Exit(1)


def _check_member(institution: str) -> None:
    """Refuse ids the access policy does not name."""
    settings = GatewaySettings()
    try:
        rights = load_rights(
            settings.hub.policy_dir, Catalog.load(settings.hub.schemas_dir)
        )
    except PuenteError as e:
        raise _fail(f"cannot load the access policy to check {institution!r}: {e}") from e
    if not rights.known(institution):
        raise _fail(f"the access policy names no institution {institution[:64]!r}")
    if is_hub_service(institution):
        raise _fail(
            f"{institution!r} is one of the hub's own services: it publishes over Kafka "
            "under its own principal and gets no gateway credential"
        )


@token_app.command("create")
def create(
    institution: Annotated[
        str, typer.Option("--institution", "-i", help="Institution id")
    ],
    scope: Annotated[
        list[str] | None,
        typer.Option(
            "--scope",
            "-s",
            help="publish or read; repeat for both (default: both)",
        ),
    ] = None,
    expires_in: Annotated[
        int | None,
        typer.Option(
            "--expires-in",
            min=1,
            help="Days until the credential expires "
            "(default: PUENTE_GATEWAY_TOKEN_EXPIRY_DAYS, 90)",
        ),
    ] = None,
    store: StoreOption = None,
) -> None:
    """Create a credential; the token is printed once and only its hash is kept."""
    _check_member(institution)
    try:
        scopes = parse_scopes(scope) if scope else ALL_SCOPES
        tokens = _store(store)
        info, token = tokens.create(institution, scopes, expires_in)
        tokens.close()
    except (InvalidIdError, PuenteError) as e:
        raise _fail(str(e)) from e
    err = Console(stderr=True)
    err.print(
        f"credential [bold]{info.id}[/bold] for [bold]{info.institution}[/bold], "
        f"scopes {_scopes(info.scopes)}, expires {_when(info.expires_at)}"
    )
    err.print("the token below is shown only now; store it in the client's secret store")
    typer.echo(token)


@token_app.command("list")
def list_tokens(
    institution: Annotated[
        str | None, typer.Option("--institution", "-i", help="Only this institution")
    ] = None,
    store: StoreOption = None,
) -> None:
    """List credentials with scopes, expiry and last use (never the token)."""
    try:
        tokens = _store(store)
        infos = tokens.list(institution)
        tokens.close()
    except PuenteError as e:
        raise _fail(str(e)) from e
    table = Table(
        "id", "institution", "scopes", "state", "created", "expires", "last used"
    )
    for info in infos:
        table.add_row(
            info.id,
            info.institution,
            _scopes(info.scopes),
            info.state,
            _when(info.created_at),
            _when(info.expires_at),
            _when(info.last_used_at),
        )
    Console(width=160).print(table)


@token_app.command("revoke")
def revoke(
    token_id: Annotated[str, typer.Argument(help="Credential id (from `token list`)")],
    store: StoreOption = None,
) -> None:
    """Revoke a credential; a running gateway refuses it from its next request."""
    try:
        tokens = _store(store)
        info = tokens.revoke(token_id)
        tokens.close()
    except (TokenError, PuenteError) as e:
        raise _fail(str(e)) from e
    Console(stderr=True).print(f"revoked {info.id} ({info.institution})")


def _scopes(scopes: frozenset[str]) -> str:
    return ",".join(sorted(scopes)) or "-"


def _when(moment: datetime | None) -> str:
    return moment.isoformat() if moment else "-"
