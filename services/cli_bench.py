"""``puente bench``: benchmarks that print figures (targets are in the README)."""

from __future__ import annotations

import asyncio
from typing import Annotated

import typer

from services.contracts.errors import PuenteError

app = typer.Typer(
    help="Benchmarks on a fresh embedded broker; they print figures.",
    no_args_is_help=True,
)


@app.command("router")
def router(  # noqa: PLR0917 - one parameter per option
    events: Annotated[
        int, typer.Option(help="Events published for the throughput runs")
    ] = 20_000,
    rate: Annotated[
        float, typer.Option(help="Offered events/s for the latency run")
    ] = 1_000,
    duration: Annotated[float, typer.Option(help="Seconds of the latency run")] = 10,
    seed: Annotated[int, typer.Option(help="Traffic seed")] = 7,
    workers: Annotated[
        int, typer.Option(help="Router processes for the scale-out run")
    ] = 2,
    rounds: Annotated[
        int,
        typer.Option(min=1, help="Router / raw pipe runs, back to back, for the ratio"),
    ] = 2,
) -> None:
    """Router vs a raw aiokafka pipe (events/s), and latency at an offered rate."""
    from services.router import bench  # noqa: PLC0415 - heavy imports only when run

    try:
        figures = asyncio.run(
            bench.run(
                events,
                rate=rate,
                duration=duration,
                seed=seed,
                echo=typer.echo,
                workers=workers,
                rounds=rounds,
            )
        )
    except (PuenteError, TimeoutError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    typer.echo(
        f"\nrouter bench ({figures.events} events, {figures.outputs} outputs):\n"
        f"  router, 1 process {figures.router_eps:>8,.0f} events/s"
        f"   (target >= 3,000; median of {len(figures.pairs)} rounds)\n"
        f"  router, {figures.workers} processes{figures.workers_eps:>8,.0f} events/s"
        "   (scale-out: one consumer group)\n"
        f"  raw aiokafka     {figures.raw_eps:>9,.0f} events/s\n"
        f"  ratio            {figures.ratio:>9.2f}            (target >= 0.35; "
        f"rounds {', '.join(f'{p.ratio:.2f}' for p in figures.pairs)})\n"
        f"  latency @ {figures.offered_rate:,.0f}/s  p50 {figures.p50_ms:.1f} ms, "
        f"p99 {figures.p99_ms:.1f} ms over {figures.latency_events} events "
        f"(target p99 <= 50 ms)\n"
        f"  latency p99 by fifth of the run: "
        f"{' / '.join(f'{v:.0f}' for v in figures.p99_by_fifth_ms)} ms"
    )
    if figures.broker_cpu is not None:
        typer.echo(
            f"  embedded broker while offered: {figures.broker_cpu:.0%} of a core "
            "(the latency follows its load)"
        )
