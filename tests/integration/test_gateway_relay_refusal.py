"""The relay gives up on a record the broker can never take, and goes on with the rest.

Rows are put straight into the outbox, as a gateway from before the size checks
stored them; the relay then runs against the embedded broker.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import MessageSizeTooLargeError
from prometheus_client import CollectorRegistry

from services.gateway.app import GatewayService
from services.gateway.deliveries import TopicReader
from services.gateway.outbox import Entry, encode_headers
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings
from tests.support.kafka import create_inbound

pytestmark = pytest.mark.integration
ROUTER_LIMIT = RouterSettings().max_event_bytes
RECORD_LIMIT = GatewaySettings().max_record_bytes()


@pytest.fixture
async def service(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[GatewayService]:
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        hub=HubSettings(state_dir=tmp_path),
        kafka=kafka,
        relay_backoff_max_s=0.5,
        prepare_workers=0,
    )
    gateway = GatewayService(settings, CollectorRegistry(), StaticRights({}))
    await gateway.start()
    yield gateway
    await gateway.stop()


def row(source: str, size: int) -> Entry:
    event_id = str(uuid.uuid4())
    value = b"\x00" * size
    return Entry(
        source, "referral", event_id, f"hub.in.{source}.referral", b"one-key", value,
        encode_headers([("ce_id", event_id.encode())]), hashlib.sha256(value).digest(),
    )  # fmt: skip


async def relayed_ids(kafka: KafkaSettings, topic: str, expected: int) -> list[str]:
    reader = TopicReader(kafka, wait_ms=1000, size=1)
    ids: list[str] = []
    cursor: dict[int, int] = {}
    deadline = time.monotonic() + 20
    try:
        while len(ids) < expected and time.monotonic() < deadline:
            page = await reader.read(topic, cursor, 100)
            ids += [
                v.decode() for r in page.records for k, v in r.headers if k == "ce_id"
            ]
            cursor = page.cursor
    finally:
        await reader.close()
    return ids


async def settled(service: GatewayService, deadline_s: float = 20) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if service.gateway.outbox.unsent_count == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def refused_metric(service: GatewayService) -> str:
    url = f"http://127.0.0.1:{service.settings.admin_port}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        text = (await http.get(url)).text
    return next(
        (line for line in text.splitlines() if line.startswith("puente_relay_refused_")),
        "",
    )


async def test_a_stored_event_larger_than_a_kafka_request_is_refused_not_retried(
    service: GatewayService, kafka: KafkaSettings, unique: str
) -> None:
    source = f"t{unique}"
    await create_inbound(kafka, {f"hub.in.{source}.referral": 1})
    # As a gateway before the size checks stored them: 4 MiB (Kafka takes 1 MiB),
    # and one over the router's limit only, which the router answers with a
    # rejection its publisher can read.
    sizes = [100, 4 * 1024 * 1024, ROUTER_LIMIT + 1, 100]
    rows = [row(source, size) for size in sizes]
    await service.gateway.outbox.append(rows)

    assert await settled(service), "the relay is stuck on the oversized row"
    ids = await relayed_ids(kafka, rows[0].topic, 3)
    refused = await service.gateway.outbox.refused()

    assert ROUTER_LIMIT < RECORD_LIMIT < 4 * 1024 * 1024
    assert ids == [rows[0].event_id, rows[2].event_id, rows[3].event_id]
    assert [(event_id, why) for _, event_id, why in refused] == [
        (rows[1].event_id, "too_large")
    ]
    assert await refused_metric(service) == (
        'puente_relay_refused_total{reason="too_large"} 1.0'
    )


@pytest.mark.parametrize(
    ("sizes", "broker_limit"),
    [([100, 200_000, 100, 100], 100_000), ([6000, 6000, 200_000, 100], 10_000)],
    ids=["alone-in-its-batch", "in-a-batch-the-broker-refuses-whole"],
)
async def test_a_record_the_broker_refuses_as_too_large_is_refused_and_the_rest_flow(
    service: GatewayService,
    kafka: KafkaSettings,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
    sizes: list[int],
    broker_limit: int,
) -> None:
    # The embedded broker takes any size; Apache Kafka refuses a batch above its
    # message.max.bytes. Stand in for that refusal at ``broker_limit``.
    send_batch = AIOKafkaProducer.send_batch

    async def picky(self: Any, batch: Any, topic: str, *, partition: int) -> Any:
        if batch.size() > broker_limit:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(MessageSizeTooLargeError())
            return refused
        return await send_batch(self, batch, topic, partition=partition)

    monkeypatch.setattr(AIOKafkaProducer, "send_batch", picky)
    source = f"t{unique}"
    await create_inbound(kafka, {f"hub.in.{source}.referral": 1})
    rows = [row(source, size) for size in sizes]
    await service.gateway.outbox.append(rows)

    assert await settled(service), "the relay is stuck on the refused record"
    ids = await relayed_ids(kafka, rows[0].topic, 3)
    refused = await service.gateway.outbox.refused()

    big = sizes.index(200_000)
    assert ids == [r.event_id for i, r in enumerate(rows) if i != big]
    assert [event_id for _, event_id, _ in refused] == [rows[big].event_id]
    assert "1.0" in await refused_metric(service)
