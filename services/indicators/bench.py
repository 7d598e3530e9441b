"""``puente bench indicators``: counting speed, database size and protection time.

No broker: the simulator's traffic is decided and projected by the real policy for
``hub_indicators`` (as the router would deliver it), then counted into a fresh
SQLite database in batches as the service's consumer loop hands them over. Then
every indicator's busiest period is protected (primary and complementary
suppression over its whole lattice), as the first request for it does.
"""

from __future__ import annotations

import tempfile
import time
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any, Final

import typer
from rich.console import Console
from rich.table import Table

from services.contracts.errors import PuenteError
from services.contracts.natural import codec_for
from services.indicators.counting import period_bounds, period_cells, period_label
from services.indicators.disclosure import protect
from services.indicators.settings import (
    INDICATORS_ID,
    IndicatorsSettings,
    load_catalogue_for,
)
from services.indicators.store import Store
from services.sim.traffic import Traffic

BATCH: Final = 500  # records per batch, the service's default
out = Console(highlight=False)


@dataclass(frozen=True, slots=True)
class Protection:
    """One indicator's busiest period, protected."""

    indicator: str
    period: str
    cells: int
    suppressed: int
    seconds: float


@dataclass(frozen=True, slots=True)
class Figures:
    """What one run measured."""

    events: int
    deliveries: int
    seconds: float
    database_bytes: int
    protections: tuple[Protection, ...]

    @property
    def rate(self) -> float:
        """Deliveries counted per second."""
        return self.deliveries / self.seconds if self.seconds else 0.0


def deliveries(events: int, seed: int) -> list[tuple[str, Mapping[str, Any]]]:
    """The views of ``events`` simulated events the policy delivers to the service."""
    catalog, policy, _ = load_catalogue_for(IndicatorsSettings())
    now = datetime.now(UTC)
    out_: list[tuple[str, Mapping[str, Any]]] = []
    for event in Traffic(seed, lambda: now, bad_share=0.0).take(events):
        datum = codec_for(catalog.get(event.event_type)).to_datum(event.body)
        for decision in policy.decide(event.event_type, datum):
            if decision.recipient == INDICATORS_ID and decision.delivered:
                view = decision.projection.apply(datum, None, _pseudonym)
                out_.append((event.event_type, view))
    return out_


def _pseudonym(value: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, value))


def measure(records: Sequence[tuple[str, Mapping[str, Any]]], events: int) -> Figures:
    """Count ``records`` into a fresh database, then protect each busiest period."""
    catalogue = load_catalogue_for(IndicatorsSettings())[2]
    with tempfile.TemporaryDirectory(prefix="puente-bench-") as folder:
        path = Path(folder) / "counts.sqlite"
        store = Store.open(path)
        try:
            began = time.perf_counter()
            for start in range(0, len(records), BATCH):
                store.apply(catalogue, records[start : start + BATCH])
            seconds = time.perf_counter() - began
            counts = {i: store.day_counts(i) for i in catalogue.indicators}
        finally:
            store.close()
        size = path.stat().st_size
    protections = []
    for ident, indicator in catalogue.indicators.items():
        days = counts[ident]
        if not days:
            continue
        busiest = max(days, key=lambda k: days[k])[0]
        first, last = period_bounds(busiest, indicator.period)
        finest = period_cells(indicator, days, first, last)
        began = time.perf_counter()
        result = protect(finest, len(indicator.dimensions), indicator.threshold)
        protections.append(
            Protection(
                ident,
                period_label(first, indicator.period),
                len(result.counts),
                len(result.suppressed),
                time.perf_counter() - began,
            )
        )
    return Figures(events, len(records), seconds, size, tuple(protections))


def report(figures: Figures) -> None:
    """Print the figures."""
    per = figures.database_bytes / figures.deliveries if figures.deliveries else 0
    out.print(
        f"counted {figures.deliveries:,} deliveries (of {figures.events:,} simulated "
        f"events) in {figures.seconds:.2f} s: {figures.rate:,.0f} deliveries/s; "
        f"database {figures.database_bytes / 1e6:.1f} MB ({per:.0f} bytes a delivery)"
    )
    table = Table("indicator", "busiest period", "cells", "hidden", "protect (ms)")
    table.columns[0].no_wrap = True
    for p in figures.protections:
        table.add_row(
            p.indicator, p.period, str(p.cells), str(p.suppressed),
            f"{p.seconds * 1000:.0f}",
        )  # fmt: skip
    out.print(table)


def bench_command(
    events: Annotated[
        int, typer.Option(min=100, help="Simulated events to route and count")
    ] = 20_000,
    seed: Annotated[int, typer.Option(help="Simulator seed")] = 7,
) -> None:
    """Counting speed, database size and protection time of the indicators."""
    try:
        out.print(f"routing {events:,} simulated events through the policy...")
        records = deliveries(events, seed)
        report(measure(records, events))
    except PuenteError as e:
        out.print(f"error: {e}")
        raise typer.Exit(1) from e
