"""An event the router or the broker would refuse is a 413 before it is durable.

The gateway here keeps its default body limit (4 MiB), so only the per-event limit
it shares with the router stands between a large event and the outbox.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import httpx
import orjson
import pytest

from services.gateway.handlers import Gateway
from services.gateway.settings import GatewaySettings
from services.router.settings import RouterSettings
from services.runtime.settings import HubSettings, KafkaSettings

URL = "/v1/events/return_arrival"
ROUTER_LIMIT = RouterSettings().max_event_bytes


@pytest.fixture
def settings(state_dir: Path) -> GatewaySettings:
    return GatewaySettings(
        hub=HubSettings(state_dir=state_dir),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        prepare_workers=1,
    )


def padded(event: Any, size: int) -> Any:
    """``event`` with a free-text field of ``size`` characters."""
    big = copy.deepcopy(event)
    big["payload"]["arrival_id"] = "x" * size
    return big


def test_the_gateway_limit_on_one_event_is_the_routers_setting(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUENTE_ROUTER_MAX_EVENT_BYTES", "70000")

    assert GatewaySettings().max_event_bytes() == RouterSettings().max_event_bytes
    assert GatewaySettings().max_event_bytes() == 70000


async def test_an_event_larger_than_the_router_accepts_is_a_413_and_not_stored(
    client: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    response = await client.post(URL, json=padded(event, ROUTER_LIMIT + 1000))

    assert response.status_code == 413, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body = response.json()
    assert body["type"] == "urn:puente:problem:event-too-large"
    assert body["limit"] == ROUTER_LIMIT
    assert body["size"] > ROUTER_LIMIT
    assert gateway.outbox.unsent_count == 0
    assert await gateway.outbox.unsent(10) == []


async def test_an_event_just_under_the_router_limit_is_accepted(
    client: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    response = await client.post(URL, json=padded(event, ROUTER_LIMIT - 2000))

    assert response.status_code == 202, response.text
    (row,) = await gateway.outbox.unsent(10)
    assert ROUTER_LIMIT - 2000 < len(row.value) <= ROUTER_LIMIT


async def test_in_a_batch_only_the_oversized_event_is_refused_with_413(
    client: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    items = 20

    def fresh(i: int) -> Any:
        copied = copy.deepcopy(event)
        copied["envelope"]["event_id"] = f"00000000-0000-4000-8000-{i:012d}"
        return copied

    events = [fresh(i) for i in range(items)]
    events[1] = padded(events[1], ROUTER_LIMIT + 10)
    body = orjson.dumps({"events": events})

    response = await client.post(
        "/v1/events:batch", content=body, headers={"content-type": "application/json"}
    )

    assert response.status_code == 200, response.text
    results = response.json()
    assert results["accepted"] == items - 1
    assert results["refused"] == 1
    refused = results["results"][1]
    assert refused["status"] == 413
    assert refused["type"] == "urn:puente:problem:event-too-large"
    stored = {r.seq for r in await gateway.outbox.unsent(100)}
    assert len(stored) == items - 1
    assert all(len(r.value) < ROUTER_LIMIT for r in await gateway.outbox.unsent(100))
