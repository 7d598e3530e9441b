"""Deliveries are read through a bounded pool of Kafka consumers (embedded broker)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.gateway import deliveries
from services.gateway.app import GatewayService
from services.gateway.deliveries import TopicReader
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.kafka import producer_config
from services.runtime.settings import HubSettings, KafkaSettings

pytestmark = pytest.mark.integration


class Counted(AIOKafkaConsumer):  # type: ignore[misc]
    """The consumer the reader builds, counted."""

    made = 0

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        Counted.made += 1
        super().__init__(*args, **kwargs)


@pytest.fixture
def counted(monkeypatch: pytest.MonkeyPatch) -> type[Counted]:
    Counted.made = 0
    monkeypatch.setattr(deliveries, "AIOKafkaConsumer", Counted)
    return Counted


async def running(
    kafka: KafkaSettings, state: Path, consumers: int, pool_wait_ms: int
) -> GatewayService:
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        hub=HubSettings(state_dir=state),
        kafka=kafka,
        prepare_workers=0,
        deliveries_consumers=consumers,
        deliveries_pool_wait_ms=pool_wait_ms,
        deliveries_wait_ms=200,
        retry_after_s=3,
    )
    service = GatewayService(settings, CollectorRegistry(), StaticRights({}))
    await service.start()
    return service


@pytest.fixture
async def recipient(kafka: KafkaSettings, unique: str) -> str:
    institution = f"t{unique}"
    await runtime_topics.create(kafka, {f"hub.out.{institution}.referral": 1})
    return institution


def client(service: GatewayService, institution: str) -> httpx.AsyncClient:
    _, token = service.gateway.tokens.create(institution)
    return httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{service.settings.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    )


@pytest.fixture
async def pooled(
    kafka: KafkaSettings, tmp_path: Path, counted: type[Counted]
) -> AsyncIterator[GatewayService]:
    del counted
    service = await running(kafka, tmp_path, consumers=2, pool_wait_ms=5000)
    yield service
    await service.stop()


async def test_many_concurrent_gets_share_at_most_the_pools_consumers(
    pooled: GatewayService, recipient: str, counted: type[Counted]
) -> None:
    async with client(pooled, recipient) as http:
        responses = await asyncio.gather(
            *(http.get("/v1/deliveries/referral") for _ in range(12))
        )
        again = await http.get("/v1/rejections")

    assert [r.status_code for r in responses] == [200] * 12
    assert again.status_code == 200
    assert counted.made <= 2


@pytest.fixture
async def single(kafka: KafkaSettings, tmp_path: Path) -> AsyncIterator[GatewayService]:
    service = await running(kafka, tmp_path, consumers=1, pool_wait_ms=200)
    yield service
    await service.stop()


async def test_when_every_consumer_stays_busy_a_get_waits_briefly_then_gets_503(
    single: GatewayService, recipient: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    release = asyncio.Event()
    entered = asyncio.Event()
    read = TopicReader._read

    async def held(self: TopicReader, *args: Any) -> Any:
        entered.set()
        await release.wait()
        return await read(self, *args)

    monkeypatch.setattr(TopicReader, "_read", held)
    async with client(single, recipient) as http:
        first = asyncio.create_task(http.get("/v1/deliveries/referral"))
        try:
            await asyncio.wait_for(entered.wait(), 10)
            entered.clear()
            busy = await asyncio.wait_for(http.get("/v1/deliveries/referral"), 5)
        finally:
            release.set()
        done = await first

    assert busy.status_code == 503
    assert busy.headers["content-type"] == "application/problem+json"
    assert busy.json()["type"] == "urn:puente:problem:readers-busy"
    assert busy.headers["Retry-After"] == "3"
    assert done.status_code == 200


async def test_a_pooled_reader_finds_a_topic_created_after_its_first_get(
    single: GatewayService, kafka: KafkaSettings, unique: str
) -> None:
    institution = f"n{unique}"
    topic = f"hub.out.{institution}.referral"
    async with client(single, institution) as http:
        before = await http.get("/v1/deliveries/referral")
        await runtime_topics.create(kafka, {topic: 1})
        producer = AIOKafkaProducer(**producer_config(kafka, "test-pool"))
        await producer.start()
        try:
            await producer.send_and_wait(topic, b"\x00", headers=[("ce_id", b"e-1")])
        finally:
            await producer.stop()
        after = await http.get("/v1/deliveries/referral")

    assert before.json()["items"] == []
    (item,) = after.json()["items"]
    assert item["event_id"] == "e-1"
    assert item["error"]["reason"]  # not an event: reported in place
