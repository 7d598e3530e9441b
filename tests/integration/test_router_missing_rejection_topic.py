"""A source with an inbound topic but no rejection topic must not stop the router.

Apache Kafka creates no topic on its own: an inbound topic for an id the policy does
not name (or no longer names) has no ``hub.rejected.<id>``. The router's refusal of
such a record has nowhere to go; it must leave that partition where it is and go on
routing every other one.
"""

from __future__ import annotations

import json
import time
import uuid
from typing import Any

import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.kafka import admin_config
from services.runtime.settings import REPO_ROOT, KafkaSettings
from tests.support.kafka import collect, header, produce
from tests.support.router import running_router

pytestmark = pytest.mark.integration
EXAMPLES = REPO_ROOT / "examples"


def _example(name: str) -> Any:
    event = json.loads((EXAMPLES / f"{name}.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    return event


async def _delete(kafka: KafkaSettings, names: list[str]) -> None:
    # Other routers of the session read every hub.in topic: leave none behind.
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-stall-admin"))
    await admin.start()
    try:
        await admin.delete_topics(names)
    finally:
        await admin.close()


async def _committed(kafka: KafkaSettings, group: str) -> dict[TopicPartition, int]:
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-stall-admin"))
    await admin.start()
    try:
        offsets = await admin.list_consumer_group_offsets(group)
    finally:
        await admin.close()
    return {tp: meta.offset for tp, meta in offsets.items()}


async def test_a_record_whose_source_has_no_rejection_topic_stops_only_its_partition(
    kafka: KafkaSettings, tmp_path: Any
) -> None:
    stranger = f"ghost_{uuid.uuid4().hex[:8]}"
    inbound = topics.inbound(stranger, "referral")
    await runtime_topics.create(kafka, {inbound: 1})  # and no hub.rejected.<stranger>
    registry = CollectorRegistry()
    try:
        async with running_router(kafka, tmp_path, registry) as router:
            stray = await produce(kafka, [(inbound, None, b"\x00not avro", [])])
            event = _example("return_arrival")
            good = pubsub.prepare(router.catalog, "return_arrival", "dgme", event)
            await pubsub.send_all(kafka, [good])
            event_id = event["envelope"]["event_id"]
            recipients = sorted(router.policy.institutions)
            outs = [topics.outbound(r, "return_arrival") for r in recipients]
            started = time.monotonic()
            got = await collect(
                kafka,
                outs,
                lambda r: (
                    header(r, "ce_id") is not None
                    and header(r, "puente_view") == "FULL"
                    and header(r, "ce_id") == event_id
                ),
                expected=1,
                timeout=60,
            )
            assert got, "a good event from dgme was not delivered within 60 s"
            assert time.monotonic() - started < 60
            stalled = registry.get_sample_value("puente_router_stalled_partitions")
            assert stalled == 1.0
            # Nothing vanished: the stray record is not committed as handled.
            committed = await _committed(kafka, router.settings.group_id)
            position = committed.get(TopicPartition(inbound, stray[0][1]))
            assert position is None or position <= stray[0][2]
    finally:
        await _delete(kafka, [inbound])
