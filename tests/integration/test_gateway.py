"""The gateway on a real broker with the router: POST -> router -> recipient GETs it."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.gateway.app import GatewayService
from services.gateway.settings import GatewaySettings
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[RouterService, GatewayService]]:
    """A router and a gateway sharing the session's broker and one state dir."""
    kafka = session_kafka
    hub_settings = HubSettings(state_dir=tmp_path_factory.mktemp("gateway-hub"))
    router = build_service(
        RouterSettings(
            group_id=f"router-{uuid.uuid4().hex[:8]}",
            port=free_port(),
            hub=hub_settings,
            kafka=kafka,
        ),
        CollectorRegistry(),
    )
    await runtime_topics.create(kafka, {"hub.in.dgme.referral": 4})
    gateway = GatewayService(
        GatewaySettings(
            port=free_port(), admin_port=free_port(), hub=hub_settings, kafka=kafka
        ),
        CollectorRegistry(),
    )
    await router.start()
    await gateway.start()
    yield router, gateway
    await gateway.stop()
    await router.stop()


def client_for(gateway: GatewayService, institution: str) -> httpx.AsyncClient:
    _, token = gateway.gateway.tokens.create(institution)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


async def pull_until(
    http: httpx.AsyncClient, path: str, found: Any, deadline_s: float = 25
) -> tuple[list[Any], str | None]:
    """GET pages of ``path`` until ``found(items)`` holds; return all items seen."""
    seen: list[Any] = []
    cursor: str | None = None
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        params = {"cursor": cursor} if cursor else {}
        response = await http.get(path, params=params)
        assert response.status_code == 200, response.text
        body = response.json()
        seen.extend(body["items"])
        cursor = body["cursor"]
        if found(seen):
            return seen, cursor
        if not body["items"]:
            await asyncio.sleep(0.2)
    return seen, cursor


async def drained(gateway: GatewayService, deadline_s: float = 20) -> None:
    """Wait until the relay has emptied the outbox."""
    deadline = time.monotonic() + deadline_s
    while gateway.gateway.outbox.unsent_count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)


def referral() -> Any:
    event = json.loads((EXAMPLES / "referral.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    return event


async def test_a_posted_referral_reaches_its_receiving_institution_over_get(
    hub: tuple[RouterService, GatewayService],
) -> None:
    _, gateway = hub
    event = referral()
    source = event["envelope"]["source_institution_id"]
    receiving = event["payload"]["receiving_institution_id"]
    event_id = event["envelope"]["event_id"]

    async with (
        client_for(gateway, source) as sender,
        client_for(gateway, receiving) as recipient,
    ):
        posted = await sender.post("/v1/events/referral", json=event)
        items, cursor = await pull_until(
            recipient,
            "/v1/deliveries/referral",
            lambda seen: any(i["event_id"] == event_id for i in seen),
        )
        after = (
            await recipient.get("/v1/deliveries/referral", params={"cursor": cursor})
        ).json()

    assert posted.status_code == 202
    (mine,) = [i for i in items if i["event_id"] == event_id]
    assert mine["view"] == "FULL"
    assert "rule" not in mine
    assert mine["purpose"]
    assert mine["legal_basis"]
    assert mine["policy_version"]
    assert mine["event"]["payload"]["referral_id"] == event["payload"]["referral_id"]
    assert mine["event"]["envelope"]["source_institution_id"] == source
    assert all(i["event_id"] != event_id for i in after["items"])


async def test_an_event_the_router_refuses_comes_back_over_get_rejections(
    hub: tuple[RouterService, GatewayService],
) -> None:
    _, gateway = hub
    event = referral()
    far = datetime.now(UTC) + timedelta(days=30)
    event["envelope"]["occurred_at"] = far.isoformat()
    event_id = event["envelope"]["event_id"]
    source = event["envelope"]["source_institution_id"]

    async with client_for(gateway, source) as sender:
        posted = await sender.post("/v1/events/referral", json=event)
        items, _ = await pull_until(
            sender,
            "/v1/rejections",
            lambda seen: any(i.get("event_id") == event_id for i in seen),
        )

    assert posted.status_code == 202
    (mine,) = [i for i in items if i.get("event_id") == event_id]
    assert mine["reason"] == "invalid"
    assert mine["original_topic"] == topics.inbound(source, "referral")
    assert "original_value" not in mine


async def test_the_relay_publishes_to_the_callers_inbound_topic_and_empties_the_outbox(
    hub: tuple[RouterService, GatewayService],
) -> None:
    _, gateway = hub
    async with client_for(gateway, "dgme") as sender:
        for _ in range(20):
            assert (
                await sender.post("/v1/events/referral", json=referral())
            ).status_code == 202
        await drained(gateway)
        admin = f"http://127.0.0.1:{gateway.settings.admin_port}/metrics"
        metrics = (await sender.get(admin)).text

    assert gateway.gateway.outbox.unsent_count == 0
    assert "puente_outbox_depth 0.0" in metrics
    published = [
        line
        for line in metrics.splitlines()
        if line.startswith("puente_relay_published_total")
    ]
    assert float(published[0].split()[-1]) >= 20
