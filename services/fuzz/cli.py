"""``puente fuzz``: the router and gateway fuzz campaigns, with figures."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Annotated

import typer
from rich.console import Console
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TimeElapsedColumn

from services.contracts.errors import PuenteError
from services.fuzz.mutate import KINDS


def fuzz(  # noqa: PLR0917 - one parameter per option
    router: Annotated[
        int, typer.Option(min=0, help="Inputs through the router's Kafka path")
    ] = 100_000,
    gateway: Annotated[
        int, typer.Option(min=0, help="Requests to the gateway's HTTP API")
    ] = 100_000,
    seed: Annotated[int, typer.Option(help="Seed: the same seed, the same inputs")] = 1,
    round_size: Annotated[
        int, typer.Option(min=100, help="Router inputs per fresh broker and router")
    ] = 10_000,
    schemathesis_share: Annotated[
        float,
        typer.Option(
            min=0.0, max=1.0, help="Share of gateway requests drawn by schemathesis"
        ),
    ] = 0.05,
    without: Annotated[
        list[str] | None,
        typer.Option(help=f"Leave out a mutation kind ({', '.join(sorted(KINDS))})"),
    ] = None,
    save_dir: Annotated[
        Path, typer.Option(help="Where failing gateway requests are saved")
    ] = Path("fuzz-failures"),
    coverage_runs: Annotated[
        int,
        typer.Option(
            min=0,
            help="Coverage-guided executions of the router's pure decisions "
            "(atheris, if installed; 0: none)",
        ),
    ] = 0,
) -> None:
    """Feed generated and mutated inputs to the router and the gateway; print figures.

    Exit code 1 when an invariant breaks: a crash, a 5xx, a delivery without its
    ledger entry, or an input left without an answer.
    """
    # Heavy imports (broker, router, schemathesis) only when the command runs.
    from services.fuzz import coverage, report  # noqa: PLC0415
    from services.fuzz import gateway as gateway_campaign  # noqa: PLC0415
    from services.fuzz import router as router_campaign  # noqa: PLC0415

    unknown = set(without or ()) - KINDS
    if unknown:
        raise typer.BadParameter(f"no mutation kind {', '.join(sorted(unknown))}")
    console = Console()
    ok = True
    try:
        with _bar(console) as bar:
            if router:
                task = bar.add_task("router inputs", total=router)
                figures = asyncio.run(
                    router_campaign.run(
                        router,
                        seed=seed,
                        round_size=round_size,
                        without=frozenset(without or ()),
                        progress=lambda n, _t: bar.update(task, completed=n),
                    )
                )
                for line in report.router_lines(figures):
                    bar.console.print(line, markup=False, highlight=False)
                ok = ok and figures.ok
            if gateway:
                task = bar.add_task("gateway requests", total=gateway)
                gw = asyncio.run(
                    gateway_campaign.run(
                        gateway,
                        seed=seed,
                        schemathesis_share=schemathesis_share,
                        save_dir=save_dir,
                        progress=lambda n, _t: bar.update(task, completed=n),
                    )
                )
                for line in report.gateway_lines(gw):
                    bar.console.print(line, markup=False, highlight=False)
                ok = ok and gw.ok
            if coverage_runs:
                guided = coverage.run(coverage_runs, seed=seed)
                for line in report.coverage_lines(guided):
                    bar.console.print(line, markup=False, highlight=False)
                ok = ok and not guided.crashed
    except PuenteError as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    if not ok:
        raise typer.Exit(1)


def _bar(console: Console) -> Progress:
    return Progress(
        "[progress.description]{task.description}",
        BarColumn(),
        MofNCompleteColumn(),
        TimeElapsedColumn(),
        console=console,
    )
