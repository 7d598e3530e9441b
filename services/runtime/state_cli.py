"""What the CLIs of recipient services with a state database share.

The indicators service and the referral tracker each keep a SQLite database that
their topics rebuild; their CLIs find that database the same way (given, the
service's, or the one ``puente up`` writes) and rebuild and compare it the same way.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from pathlib import Path
from typing import Annotated, Protocol, TypeVar

import typer
from rich.console import Console

from services.runtime import broker
from services.runtime.settings import RecipientServiceSettings

RebuildOutOption = Annotated[
    Path | None,
    typer.Option("--out", help="Fresh database to write (default: beside the live one)"),
]


class _Closable(Protocol):
    def close(self) -> None: ...


StoreT = TypeVar("StoreT", bound=_Closable)


def state_database(
    path: Path | None,
    settings: RecipientServiceSettings,
    *,
    embedded_name: str,
    what: str,
    err: Console,
) -> Path:
    """The database to read: given, the service's, or the one `puente up` writes."""
    if path is not None:
        return path
    found = settings.db_file
    embedded = settings.hub.state_dir / broker.EMBEDDED_STATE / embedded_name
    if settings.db_path is None and not found.exists() and embedded.exists():
        err.print(f"using the {what} database of `puente up`: {embedded}")
        return embedded
    return found


def require_kafka(settings: RecipientServiceSettings, err: Console) -> None:
    """Exit 2 with the hint unless Kafka is configured: a rebuild reads its topics."""
    if not settings.kafka.bootstrap_servers:
        err.print(
            "error: set PUENTE_KAFKA_BOOTSTRAP_SERVERS (the address `puente up` prints)"
        )
        raise typer.Exit(2)


def rebuild_target(live: Path, out_path: Path | None) -> Path:
    """Where a rebuild writes: ``out_path``, or a fresh file beside the live database."""
    target = out_path or live.with_name(f"{live.stem}.rebuilt.sqlite")
    if out_path is None:
        target.unlink(missing_ok=True)
    return target


def compare_rebuilt(
    live: Path,
    rebuilt: Path,
    open_readonly: Callable[[Path], StoreT],
    differences: Callable[[StoreT, StoreT], list[str]],
) -> list[str] | None:
    """What differs between the live and the rebuilt database (None: no live one)."""
    if not live.exists():
        return None
    with (
        contextlib.closing(open_readonly(live)) as a,
        contextlib.closing(open_readonly(rebuilt)) as b,
    ):
        return differences(a, b)
