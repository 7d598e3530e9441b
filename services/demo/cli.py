"""``puente demo``: `up` plus simulated ministries, a live view and a summary."""

from __future__ import annotations

import logging
from typing import Annotated

import typer
from rich.console import Console
from rich.logging import RichHandler

from services.contracts.errors import PuenteError
from services.runtime.service import configure_logging


def demo(
    rate: Annotated[
        float, typer.Option(min=0.1, help="Simulated inputs published per second.")
    ] = 50,
    duration: Annotated[
        float | None,
        typer.Option(
            min=1, help="Seconds of publishing, then a summary; without it, until Ctrl-C."
        ),
    ] = None,
    seed: Annotated[int, typer.Option(help="Same seed, same sequence of inputs.")] = 7,
) -> None:
    """Run every service with simulated ministries publishing realistic traffic.

    Return flights, land returns, CA-4 border crossings, displacement registrations
    and referral lifecycles, plus a small share of malformed or unauthorised inputs
    so rejections show. A live view (a progress line when stdout is not a terminal)
    follows the hub; Ctrl-C or the end of --duration stops everything and prints a
    summary. Exit code 0 only if the hub handled every input as expected.
    """
    # Imported here: `puente --help` should not pay for the services' imports.
    from services.demo import app, view  # noqa: PLC0415

    console = Console(highlight=False)
    _logging(console, app.log_level())
    try:
        outcome = app.run(app.Options(rate, duration, seed), console)
    except PuenteError as e:
        Console(stderr=True, highlight=False).print(
            f"[red]error:[/red] {e}", soft_wrap=True
        )
        raise typer.Exit(1) from e
    for table in view.summary_tables(outcome.board):
        console.print(table)
    for line in view.summary_lines(outcome.board, outcome.ledger):
        console.print(line, soft_wrap=True)
    console.print(view.verdict_text(outcome.verdict), soft_wrap=True)
    if not outcome.verdict.ok:
        raise typer.Exit(1)


def _logging(console: Console, level: str) -> None:
    """Log lines above the live view on a terminal, plain lines on stderr otherwise."""
    if console.is_terminal:
        handler = RichHandler(console=console, show_path=False)
        logging.basicConfig(
            level=level, format="%(name)s: %(message)s", handlers=[handler]
        )
    configure_logging(level)
