"""The router as its own SCRAM principal on Apache Kafka, with only the plan's ACLs.

A smoke test of the router's settings against the production broker settings: it
authenticates with SASL/SCRAM, finds its topics, joins its group, and routes an event
that the source publishes over TLS to the recipients the policy names, who read it
with their own credentials.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import AIOKafkaConsumer, TopicPartition
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.contracts.natural import codec_for
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.kafka import consumer_config
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings, TopicSettings
from tests.security.hub import Hub
from tests.support.kafka import header

pytestmark = [pytest.mark.security, pytest.mark.timeout(180)]


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def router(
    hub: Hub, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RouterService]:
    settings = RouterSettings(
        port=free_port(),
        hub=HubSettings(state_dir=tmp_path_factory.mktemp("router-state")),
        kafka=hub.settings("puente-router"),
    )
    service = build_service(settings, CollectorRegistry())
    await service.start()
    yield service
    await service.stop()


async def test_the_router_routes_on_apache_kafka_as_its_own_principal(
    hub: Hub, router: RouterService
) -> None:
    event = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
    event_id = str(uuid.uuid4())
    event["envelope"]["event_id"] = event_id
    source = event["envelope"]["source_institution_id"]
    datum = codec_for(router.catalog.get("return_arrival")).to_datum(event)
    decisions = [d for d in router.policy.decide("return_arrival", datum) if d.delivered]
    want = {d.recipient: d.view for d in decisions}
    assert len(want) >= 2
    # A pseudonymous recipient's delivery carries its own event id.
    keys = subject_keys(HubKeySettings(hub=router.settings.hub))
    ids = {
        d.recipient: keys.recipient_id(d.recipient, event_id) if d.rekeyed else event_id
        for d in decisions
    }

    prepared = pubsub.prepare(router.catalog, "return_arrival", source, event)
    await pubsub.send_all(hub.settings(source), [prepared])

    received = {
        recipient: await views(
            hub.settings(recipient),
            topics.outbound(recipient, "return_arrival"),
            ids[recipient],
        )
        for recipient in sorted(want)
    }
    assert received == {r: [view] for r, view in want.items()}


async def views(
    settings: KafkaSettings, topic: str, event_id: str, timeout: float = 60.0
) -> list[str | None]:
    """The views of the deliveries of ``event_id`` in ``topic``, read as ``settings``.

    Partitions are named, not looked up: aiokafka's consumer learns no partitions
    from ``topics()`` on Apache Kafka (tests.support.kafka.collect relies on that).
    """
    consumer = AIOKafkaConsumer(**consumer_config(settings, None, "test-views"))
    await consumer.start()
    try:
        partitions = [
            TopicPartition(topic, p) for p in range(TopicSettings().outbound_partitions)
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        found: list[str | None] = []
        deadline = time.monotonic() + timeout
        while not found and time.monotonic() < deadline:
            batch = await consumer.getmany(timeout_ms=200)
            found += matching(batch, event_id)
        await asyncio.sleep(0.5)  # a duplicate would follow at once
        batch = await consumer.getmany(timeout_ms=200)
        return found + matching(batch, event_id)
    finally:
        await consumer.stop()


def matching(batch: dict[TopicPartition, list[Any]], event_id: str) -> list[str | None]:
    return [
        header(r, "puente_view")
        for records in batch.values()
        for r in records
        if header(r, "ce_id") == event_id
    ]
