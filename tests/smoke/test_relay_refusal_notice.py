"""On the embedded broker an event too large to send is answered to its publisher.

The embedded broker takes records of any size, so there only the relay's own check
refuses one: a row larger than the producer's request size, as a gateway from before
the size checks stored it. Its refusal notice (no value) goes through the embedded
broker to a real router, which answers it on ``hub.rejected.<source>``.
"""

from __future__ import annotations

import asyncio
import hashlib
import time
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.contracts import codec, headers, topics
from services.contracts.catalog import Catalog
from services.gateway.app import GatewayService
from services.gateway.outbox import Entry, encode_headers
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings
from tests.support.kafka import collect, create_inbound, header
from tests.support.router import running_router

pytestmark = [pytest.mark.smoke]
TOO_LARGE_FOR_A_REQUEST = 2 * 1024 * 1024


def oversized(source: str) -> Entry:
    event_id = str(uuid.uuid4())
    value = b"\x00" * TOO_LARGE_FOR_A_REQUEST
    cloud = headers.attributes(event_id, source, "referral", None)
    return Entry(
        source, "referral", event_id, topics.inbound(source, "referral"), b"key", value,
        encode_headers(cloud), hashlib.sha256(value).digest(),
    )  # fmt: skip


async def unreported_after(gateway: GatewayService, seconds: float) -> int:
    """Refused events not reported yet, once none are left or ``seconds`` passed."""
    outbox = gateway.gateway.outbox
    deadline = time.monotonic() + seconds
    while outbox.unreported_count and time.monotonic() < deadline:  # noqa: ASYNC110
        await asyncio.sleep(0.1)
    return outbox.unreported_count


async def test_an_event_too_large_for_a_request_is_answered_as_too_large(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, tmp_path: Path
) -> None:
    source = f"big_{uuid.uuid4().hex[:8]}"
    inbound = topics.inbound(source, "referral")
    # Before the router subscribes: its pattern sees it without a metadata refresh.
    await create_inbound(kafka, {inbound: 1})
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        hub=HubSettings(state_dir=tmp_path / "gateway"),
        kafka=kafka,
        relay_backoff_max_s=0.5,
        prepare_workers=0,
    )
    gateway = GatewayService(settings, CollectorRegistry(), StaticRights({}))
    async with running_router(kafka, state_dir):
        await gateway.start()
        try:
            row = oversized(source)
            await gateway.gateway.outbox.append([row])
            answered = await collect(
                kafka,
                [topics.rejected(source)],
                lambda r: r.key == row.event_id.encode(),
                expected=1,
                timeout=60,
            )
            unreported = await unreported_after(gateway, 20)
        finally:
            await gateway.stop()
    on_topic = await collect(kafka, [inbound], lambda r: True, expected=1, timeout=10)

    (rejection,) = answered
    datum = codec.decode_as(catalog, rejection.value, catalog.get("rejection"))
    assert datum["reason"] == "too_large"
    assert datum["event_id"] == row.event_id
    limit = settings.max_record_bytes()
    assert datum["message"].endswith(f"bytes > {limit})")
    assert unreported == 0
    (notice,) = on_topic
    assert not notice.value
    assert header(notice, headers.REFUSED) == "too_large"
