"""``puente bench``: benchmarks that print figures (current ones: docs/benchmarks.md)."""

from __future__ import annotations

import asyncio
import enum
from typing import TYPE_CHECKING, Annotated, Literal

import typer

from services.contracts.errors import PuenteError

if TYPE_CHECKING:
    from services.router.bench import Figures


class TransactionsChoice(enum.StrEnum):
    """The router's transactions settings a bench on Apache Kafka runs with."""

    off = "off"
    on = "on"
    both = "both"

    @property
    def modes(self) -> list[Literal["on", "off"]]:
        """The settings, in the order they run."""
        if self is TransactionsChoice.both:
            return ["off", "on"]
        return ["on"] if self is TransactionsChoice.on else ["off"]


app = typer.Typer(
    help="Benchmarks on a fresh embedded broker (the router's also on Apache Kafka); "
    "they print figures.",
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
    embedded: Annotated[
        bool,
        typer.Option(help="Measure on the embedded broker (a fresh one per phase)"),
    ] = True,
    kafka: Annotated[
        bool,
        typer.Option(
            "--kafka",
            help="Also measure on a local Apache Kafka started for the run "
            "(as `puente kafka up`) and stopped after it",
        ),
    ] = False,
    bootstrap: Annotated[
        str | None,
        typer.Option(
            help="Also measure on the Apache Kafka running at HOST:PORT; credentials "
            "(an admin's) from PUENTE_KAFKA_*, e.g. `set -a; . <kafka state>/admin.env`",
        ),
    ] = None,
    transactions: Annotated[
        TransactionsChoice,
        typer.Option(
            help="The router's transactions on Apache Kafka: a run with them off, "
            "on, or both (off first); the embedded broker has none"
        ),
    ] = TransactionsChoice.both,
) -> None:
    """Router vs a raw aiokafka pipe (events/s), and latency at an offered rate.

    Each broker asked for is measured in turn, in one run: the embedded broker first,
    then Apache Kafka (once per transactions setting).
    """
    from services.router import bench, bench_brokers  # noqa: PLC0415 - heavy imports

    def measure(
        brokers: bench_brokers.Brokers | None, mode: bench.Transactions = "off"
    ) -> bench.Figures:
        return asyncio.run(
            bench.run(
                events,
                rate=rate,
                duration=duration,
                seed=seed,
                echo=typer.echo,
                workers=workers,
                rounds=rounds,
                brokers=brokers,
                transactions=mode,
            )
        )

    if not (embedded or kafka or bootstrap):
        typer.echo("error: no broker to measure on (--no-embedded alone)", err=True)
        raise typer.Exit(2)
    figures: list[bench.Figures] = []
    try:
        if embedded:
            figures.append(measure(None))
        modes = transactions.modes
        if bootstrap:
            running = bench_brokers.running_apache_kafka(bootstrap)
            figures.extend(measure(running, mode) for mode in modes)
        if kafka:
            with bench_brokers.local_apache_kafka() as local:
                figures.extend(measure(local, mode) for mode in modes)
    except (PuenteError, TimeoutError) as e:
        typer.echo(f"error: {e}", err=True)
        raise typer.Exit(1) from e
    for one in figures:
        typer.echo(report(one))


def report(figures: Figures) -> str:
    """The figures of one broker, with the targets."""
    text = (
        f"\nrouter bench on {figures.broker}, transactions {figures.transactions} "
        f"({figures.events} events, {figures.outputs} outputs):\n"
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
        text += (
            f"\n  broker while offered: {figures.broker_cpu:.0%} of a core "
            "(the latency follows its load)"
        )
    return text
