"""A bounded slice of `puente fuzz`: the same campaigns and invariants, fewer inputs.

The full campaign (100,000 router inputs, 100,000 gateway requests) runs with
``puente fuzz``; these run 2,000 of each, with every mutation kind.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from services.fuzz import gateway, router

pytestmark = [pytest.mark.integration, pytest.mark.slow]
SEED = 20261207
SLICE = 2_000


@pytest.mark.timeout(300)
async def test_each_router_input_is_answered_and_each_delivery_is_in_the_ledger() -> None:
    figures = await router.run(SLICE, seed=SEED, round_size=SLICE, stall_seconds=30)

    assert figures.inputs == SLICE
    assert figures.crashes == 0, figures.samples
    assert figures.unanswered == 0, figures.samples
    assert figures.answered == SLICE
    assert figures.unaudited_deliveries == 0, figures.samples
    assert figures.ledger_refused == 0
    assert figures.respelled_routed == 0, figures.samples
    # Both paths were exercised: refusals by reason, and deliveries.
    assert len(figures.rejected) >= 5
    assert figures.deliveries > 500


@pytest.mark.timeout(300)
async def test_no_gateway_request_earns_a_5xx_and_every_refusal_is_a_problem_document(
    tmp_path: Path,
) -> None:
    figures = await gateway.run(
        SLICE, seed=SEED, schemathesis_share=0.05, save_dir=tmp_path / "failures"
    )

    assert figures.requests >= SLICE * 0.99  # a few drawn requests cannot be sent
    assert figures.server_errors == 0, figures.samples
    assert figures.unexplained == 0, figures.samples
    assert figures.dropped == 0, figures.samples
    assert figures.crashes == 0, figures.samples
    assert figures.statuses[202] > 0  # valid events were taken
    assert {400, 401, 403, 422} <= set(figures.statuses)
    assert list((tmp_path / "failures").glob("*.json")) == []
