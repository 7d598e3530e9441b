"""``puente bench indicators`` measures what it says, on the real policy and catalogue."""

from __future__ import annotations

from typer.testing import CliRunner

from services.cli import app as root
from services.indicators.bench import deliveries, measure


def test_the_bench_counts_the_deliveries_and_protects_each_busiest_period() -> None:
    records = deliveries(600, seed=3)
    figures = measure(records, 600)
    assert figures.deliveries == len(records) > 0
    assert figures.rate > 0
    assert figures.database_bytes > 0
    protected = {p.indicator for p in figures.protections}
    assert {"returns", "border_crossings_by_direction"} <= protected
    assert all(0 <= p.suppressed <= p.cells for p in figures.protections)


def test_the_bench_command_prints_its_figures() -> None:
    shown = CliRunner().invoke(root, ["bench", "indicators", "--events", "300"])
    assert shown.exit_code == 0, shown.output
    assert "deliveries/s" in shown.output
    assert "returns" in shown.output
