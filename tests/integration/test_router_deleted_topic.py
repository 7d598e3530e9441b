"""A rejection topic deleted while the router runs holds only its source's partition.

The router learns a rejection topic exists once, and writes its refusals there from
then on. An admin may delete the topic meanwhile (a clean-up, a source retired);
written anyway, its refusals fail their batch, which is routed again and fails
again, and every source's routing stops. Here a router runs as a principal with
exactly the production router's rights (no CREATE): once ``hub.rejected.x`` is gone
it must go on routing every other source, hold ``x``'s partition at its next refused
record (uncommitted, counted, named in one ERROR line) and answer every held record
once an admin creates the topic again: nothing lost, nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.contracts import topics
from services.kafkalocal import LocalKafka
from services.router.app import RouterService
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import KafkaSettings
from tests.support.held_router import (
    HELD,
    admin,
    committed,
    errors_naming,
    eventually,
    exists,
    member_event,
    original_offsets,
    restricted_router,
    stranger_source,
)
from tests.support.kafka import collect, header, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]
STRAYS = 3
# How long the other sources may wait while the deleted topic is found out: a send's
# metadata wait and one retry, well below the stall it replaces (for ever).
OTHERS_WAIT = 90.0


@pytest_asyncio.fixture(loop_scope="session")
async def stranger(kafka: KafkaSettings) -> AsyncIterator[str]:
    """A source the policy does not name, with an inbound and a rejection topic."""
    async with stranger_source(kafka, "gone", rejected=True) as name:
        yield name


@pytest_asyncio.fixture(loop_scope="session", params=["auto", "off"])
async def router(
    request: pytest.FixtureRequest,
    apache_kafka: LocalKafka,
    kafka: KafkaSettings,
    stranger: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[RouterService, CollectorRegistry]]:
    """A router with the production router's rights, in transactions and without."""
    del stranger  # its topics exist before the router subscribes
    async with restricted_router(
        apache_kafka, kafka, tmp_path, transactions=request.param, prefix="deleted-router"
    ) as running:
        yield running


async def test_a_rejection_topic_deleted_while_routing_holds_only_its_partition(
    kafka: KafkaSettings,
    stranger: str,
    router: tuple[RouterService, CollectorRegistry],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, registry = router
    inbound, rejected = topics.inbound(stranger, "referral"), topics.rejected(stranger)
    held_tp = TopicPartition(inbound, 0)
    caplog.set_level(logging.INFO)

    # A first refusal is answered: the router has seen the topic and writes to it.
    [(_, _, first)] = await produce(kafka, [(inbound, None, b"\x00stray-first", [])])
    answered = await collect(kafka, [rejected], lambda r: True, expected=1, timeout=60)
    assert original_offsets(service, answered) == [first]

    # An admin deletes it while the router runs.
    async with admin(kafka) as client:
        await client.delete_topics([rejected])
    await eventually(lambda: _exists_not(kafka, rejected), 60, f"{rejected} deleted")

    # More of the stranger's records and a member's events, interleaved.
    strays: list[int] = []
    good: set[str] = set()
    for n in range(STRAYS):
        [(_, _, offset)] = await produce(kafka, [(inbound, None, b"\x00stray%d" % n, [])])
        strays.append(offset)
        event_id, prepared = member_event(service)
        await pubsub.send_all(kafka, [prepared])
        good.add(event_id)

    # Every other source goes on: each member event is delivered, and soon.
    outs = [
        topics.outbound(r, "return_arrival") for r in sorted(service.policy.institutions)
    ]
    delivered = await collect(
        kafka,
        outs,
        lambda r: header(r, "ce_id") in good and header(r, "puente_view") == "FULL",
        expected=STRAYS,
        timeout=OTHERS_WAIT,
    )
    assert {header(r, "ce_id") for r in delivered} == good

    # The stranger's partition is held at its first record after the deletion.
    def held() -> bool:
        waiting = service.router.held.waiting
        counted = registry.get_sample_value(HELD) == len(waiting)
        return counted and waiting.get(held_tp) == rejected

    await eventually(held, 60, f"{inbound} held and counted")
    assert await committed(kafka, service.settings.group_id, held_tp) == strays[0]
    assert errors_naming(caplog, rejected)
    # Names and offsets only: never a record's content.
    assert all("stray" not in r.getMessage() for r in caplog.records)

    # Once an admin creates the topic again, every held record is answered once.
    await eventually(
        lambda: _created(kafka, rejected), 60, f"{rejected} created again by the admin"
    )
    answers = await collect(
        kafka, [rejected], lambda r: True, expected=STRAYS, timeout=120, settle=3
    )
    assert original_offsets(service, answers) == strays
    await eventually(lambda: not held(), 60, f"{inbound} no longer held")
    assert registry.get_sample_value(HELD) == len(service.router.held.waiting)

    async def committed_past() -> bool:
        position = await committed(kafka, service.settings.group_id, held_tp)
        return position == strays[-1] + 1

    await eventually(committed_past, 60, f"{inbound} committed past its last record")
    assert len(errors_naming(caplog, rejected, "services.")) == 1
    # aiokafka logs an ERROR line for each metadata update that lacks the topic; the
    # producer that asks for it is closed at the first (it used to ask in a tight
    # loop until its request timeout: thousands of lines).
    assert len(errors_naming(caplog, rejected)) <= 10


async def _exists_not(kafka: KafkaSettings, topic: str) -> bool:
    return not await exists(kafka, topic)


async def _created(kafka: KafkaSettings, topic: str) -> bool:
    """Create ``topic``; False while the broker still finishes deleting it."""
    try:
        await runtime_topics.create_topic(kafka, topic, 1)
    except runtime_topics.TopicBootstrapError:  # still being deleted: try again
        return False
    return await exists(kafka, topic)
