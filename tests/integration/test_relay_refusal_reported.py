"""An accepted event the broker refuses is reported to its publisher.

A router and a gateway run on the session's Apache Kafka node. The inbound topic the
gateway relays to takes records of at most 8 KiB (``max.message.bytes``), far under
the gateway's own limit, so a 40 KB referral is accepted over HTTP (202) and then
refused by the broker. Its publisher reads why on ``GET /v1/rejections``; later
events of the same source still reach their recipient, and nothing of the refused
one reaches anyone.
"""

from __future__ import annotations

import asyncio
import json
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx
import pytest
import pytest_asyncio
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.gateway.app import GatewayService
from services.gateway.settings import GatewaySettings
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import topic_admin
from services.runtime.embedded import free_port
from services.runtime.kafka import admin_config
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"
SOURCE = "dgme"
TOPIC = topics.inbound(SOURCE, "referral")
BROKER_LIMIT = 8192
Hub = tuple[RouterService, GatewayService]


async def topic_limit(kafka: KafkaSettings, limit: int | None) -> None:
    """Set (or with None, drop) the inbound topic's ``max.message.bytes``."""
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-topic-limit"))
    await admin.start()
    try:
        configs = {} if limit is None else {"max.message.bytes": str(limit)}
        await admin.alter_configs(
            [ConfigResource(ConfigResourceType.TOPIC, TOPIC, configs=configs)]
        )
    finally:
        await admin.close()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def hub(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[Hub]:
    """A router and a gateway; the inbound topic takes records of 8 KiB at most."""
    kafka = session_kafka
    await topic_admin.create(kafka, {TOPIC: 4, topics.rejected(SOURCE): 1})
    # Other modules of the session share the topic: its limit is dropped afterwards.
    await topic_limit(kafka, BROKER_LIMIT)
    settings = HubSettings(state_dir=tmp_path_factory.mktemp("refusal-hub"))
    router = build_service(
        RouterSettings(
            group_id=f"router-{uuid.uuid4().hex[:8]}",
            port=free_port(),
            hub=settings,
            kafka=kafka,
        ),
        CollectorRegistry(),
    )
    gateway = GatewayService(
        GatewaySettings(
            port=free_port(),
            admin_port=free_port(),
            hub=settings,
            kafka=kafka,
            relay_backoff_max_s=0.5,
        ),
        CollectorRegistry(),
    )
    await router.start()
    await gateway.start()
    try:
        yield router, gateway
    finally:
        await gateway.stop()
        await router.stop()
        await topic_limit(kafka, None)


def client_for(gateway: GatewayService, institution: str) -> httpx.AsyncClient:
    _, token = gateway.gateway.tokens.create(institution)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


def referral(padding: int = 0) -> Any:
    """A new referral; ``padding`` random hex characters make it that much larger."""
    event = json.loads((EXAMPLES / "referral.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["payload"]["referral_id"] = str(uuid.uuid4())
    event["envelope"]["correlation_id"] = event["payload"]["referral_id"]
    if padding:
        # Random, so no compression brings it back under the broker's limit.
        event["envelope"]["source_record_id"] = secrets.token_hex(padding // 2)
    return event


async def pull_until(
    http: httpx.AsyncClient,
    path: str,
    found: Callable[[list[Any]], bool],
    deadline_s: float = 60,
) -> list[Any]:
    """GET pages of ``path`` until ``found(items)`` holds; return every item seen."""
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
            break
        if not body["items"]:
            await asyncio.sleep(0.2)
    return seen


async def metric(gateway: GatewayService, name: str) -> float | None:
    url = f"http://127.0.0.1:{gateway.settings.admin_port}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    for line in text.splitlines():
        if line.startswith((name + " ", name + "{")):
            return float(line.rsplit(" ", 1)[1])
    return None


async def test_an_event_the_broker_refuses_as_too_large_comes_back_over_get_rejections(
    hub: Hub, session_kafka: KafkaSettings
) -> None:
    _, gateway = hub
    big, later = referral(padding=40_000), referral()
    big_id, later_id = big["envelope"]["event_id"], later["envelope"]["event_id"]
    receiving = later["payload"]["receiving_institution_id"]

    async with (
        client_for(gateway, SOURCE) as sender,
        client_for(gateway, receiving) as recipient,
    ):
        posted = [
            (await sender.post("/v1/events/referral", json=e)).status_code
            for e in (big, later)
        ]
        rejections = await pull_until(
            sender,
            "/v1/rejections",
            lambda seen: any(i.get("event_id") == big_id for i in seen),
        )
        deliveries = await pull_until(
            recipient,
            "/v1/deliveries/referral",
            lambda seen: any(i["event_id"] == later_id for i in seen),
        )
    # Every delivery has its audit entry, keyed by the hub's event id: none at all
    # for the refused event means no recipient got it, under any view.
    audited = await collect(
        session_kafka,
        [topics.AUDIT],
        lambda r: r.key in (big_id.encode(), later_id.encode()),
        expected=1,
        settle=3,
    )

    assert posted == [202, 202]
    (mine,) = [i for i in rejections if i.get("event_id") == big_id]
    assert mine["reason"] == "too_large"
    assert mine["event_type"] == "referral"
    assert mine["original_topic"] == TOPIC
    assert "the broker refused the event as too large" in mine["message"]
    assert [i["event_id"] for i in deliveries].count(later_id) == 1
    assert all(i["event_id"] != big_id for i in deliveries)
    assert audited, "the later event was routed without an audit entry"
    assert {r.key for r in audited} == {later_id.encode()}
    assert await metric(gateway, "puente_relay_refused_total") == 1.0
    assert await metric(gateway, "puente_relay_refusals_reported_total") == 1.0
    assert await metric(gateway, "puente_relay_refusals_unreported") == 0.0
