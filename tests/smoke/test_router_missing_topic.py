"""On the embedded broker a missing rejection topic is created, and nothing is held.

Anyone may create topics there (`puente up`, `make demo`, the fuzz campaign), so a
refusal for a source without ``hub.rejected.<source>`` is answered at once, on a
topic with the configured partition count, instead of holding its partition.
"""

from __future__ import annotations

import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts import codec, topics
from services.router.app import RouterService
from services.runtime import topic_admin
from services.runtime.settings import KafkaSettings
from tests.support.kafka import collect, partitions_of, produce
from tests.support.router import running_router

pytestmark = [pytest.mark.smoke]


@pytest_asyncio.fixture(loop_scope="session")
async def stranger(kafka: KafkaSettings) -> str:
    """A source the policy does not name, with an inbound topic and no rejected one."""
    name = f"ghost_{uuid.uuid4().hex[:8]}"
    # Before the router subscribes: its pattern sees it without a metadata refresh.
    await topic_admin.create(kafka, {topics.inbound(name, "referral"): 1})
    return name


@pytest_asyncio.fixture(loop_scope="session")
async def router(
    kafka: KafkaSettings, stranger: str, state_dir: Path, registry: CollectorRegistry
) -> AsyncIterator[RouterService]:
    del stranger
    async with running_router(kafka, state_dir, registry) as service:
        yield service


async def test_a_refusal_for_a_source_without_a_rejection_topic_creates_it(
    kafka: KafkaSettings,
    stranger: str,
    router: RouterService,
    registry: CollectorRegistry,
) -> None:
    inbound, rejected = topics.inbound(stranger, "referral"), topics.rejected(stranger)
    strays = await produce(kafka, [(inbound, None, b"\x00stray", [])] * 2)

    deadline = time.monotonic() + 60
    while not await partitions_of(kafka, [rejected]):
        assert time.monotonic() < deadline, f"{rejected} not created within 60 s"
    answers = await collect(kafka, [rejected], lambda r: True, expected=2, timeout=60)

    decoded = [codec.decode(router.catalog, r.value, plain=True)[1] for r in answers]
    assert sorted(d["original_offset"] for d in decoded) == [s[2] for s in strays]
    partitions = await partitions_of(kafka, [rejected])
    assert len(partitions) == router.settings.topics.rejected_partitions
    assert registry.get_sample_value("puente_router_partitions_held") == 0.0
