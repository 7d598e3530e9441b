"""`puente bench router` end to end at a small size: every phase runs and reports."""

from __future__ import annotations

import pytest

from services.router import bench

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
async def test_a_small_router_bench_measures_every_phase() -> None:
    lines: list[str] = []
    figures = await bench.run(
        300, rate=200, duration=1, seed=7, echo=lines.append, workers=1, rounds=2
    )
    assert len(figures.pairs) == 2
    assert all(p.router_eps > 0 and p.raw_eps > 0 for p in figures.pairs)
    # Every event decided yields at least one audit entry or a rejection.
    assert figures.outputs >= 300
    assert figures.workers_eps > 0
    assert figures.latency_events > 100  # most of the 200 offered events deliver
    assert figures.p50_ms <= figures.p99_ms
    assert len(figures.p99_by_fifth_ms) == 5
    # The whole run's p99 cannot exceed the worst fifth's (up to interpolation).
    assert max(figures.p99_by_fifth_ms) >= figures.p99_ms * 0.9
    # The broker worked while events were offered (its CPU is read from its process).
    assert figures.broker_cpu is not None
    assert figures.broker_cpu > 0
    assert min(p.ratio for p in figures.pairs) <= figures.ratio
    assert figures.ratio <= max(p.ratio for p in figures.pairs)
    assert [line.split(":")[0] for line in lines if line.startswith("round")] == [
        "round 1",
        "round 2",
    ]
