"""What every ``puente`` command group shares."""

from __future__ import annotations

from typing import Any

import typer
from typer.core import TyperGroup

from services.contracts.errors import PuenteError


class PuenteGroup(TyperGroup):
    """Turns every `PuenteError` into a one-line message and exit code 1."""

    def invoke(self, ctx: Any) -> Any:
        """Run the command; a `PuenteError` becomes ``error: …`` on stderr, exit 1."""
        try:
            return super().invoke(ctx)
        except PuenteError as e:
            typer.echo(f"error: {e}", err=True)
            raise typer.Exit(1) from e
