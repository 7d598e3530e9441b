"""The ``puente`` command (typer + rich). Sub-commands live next to their service."""

from __future__ import annotations

import typer

app = typer.Typer(
    name="puente",
    help="Puente: the MCNMH event hub. Every command has --help.",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
)


def main() -> None:
    """Entry point of the console script."""
    app()
