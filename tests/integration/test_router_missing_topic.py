"""A source with an inbound topic but no rejection topic holds only its own partition.

Production brokers create no topic on their own, and the router's principal may not
create one. An admin who makes ``hub.in.<x>.*`` for an id the policy does not name
(or a policy that drops an institution whose topics remain) leaves the router with
refusals it cannot write. Here a router runs as a principal with exactly the
production router's rights (no CREATE): it must go on routing every other source,
hold ``x``'s partition at its first refused record (uncommitted, counted on a gauge,
named in one ERROR line) and answer every held record once an admin creates
``hub.rejected.x``: nothing lost, nothing twice.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from prometheus_client import CollectorRegistry

from services.contracts import codec, topics
from services.kafkalocal import LocalKafka
from services.router.app import RouterService
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import KafkaSettings
from tests.support.held_router import (
    HELD,
    committed,
    errors_naming,
    eventually,
    member_event,
    restricted_router,
    stranger_source,
)
from tests.support.kafka import collect, header, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]
STRAYS = 3


@pytest_asyncio.fixture(loop_scope="session")
async def stranger(kafka: KafkaSettings) -> AsyncIterator[str]:
    """A source the policy does not name, with an inbound topic and no rejected one."""
    async with stranger_source(kafka, "ghost", rejected=False) as name:
        yield name


@pytest_asyncio.fixture(loop_scope="session", params=["auto", "off"])
async def router(
    request: pytest.FixtureRequest,
    apache_kafka: LocalKafka,
    kafka: KafkaSettings,
    stranger: str,
    tmp_path: Path,
) -> AsyncIterator[tuple[RouterService, CollectorRegistry]]:
    """A router under a principal with the production router's rights only.

    In transactions (what production runs) and at least once (offsets committed
    by the router itself).
    """
    del stranger  # its topic exists before the router subscribes
    async with restricted_router(
        apache_kafka, kafka, tmp_path, transactions=request.param, prefix="stall-router"
    ) as running:
        yield running


async def test_a_source_without_a_rejection_topic_holds_its_partition_until_it_exists(
    kafka: KafkaSettings,
    stranger: str,
    router: tuple[RouterService, CollectorRegistry],
    caplog: pytest.LogCaptureFixture,
) -> None:
    service, registry = router
    inbound, rejected = topics.inbound(stranger, "referral"), topics.rejected(stranger)
    held_tp = TopicPartition(inbound, 0)
    caplog.set_level(logging.INFO)

    # The stranger's records and a member's events, interleaved.
    strays: list[int] = []
    good: set[str] = set()
    for n in range(STRAYS):
        [(_, _, offset)] = await produce(kafka, [(inbound, None, b"\x00stray%d" % n, [])])
        strays.append(offset)
        event_id, prepared = member_event(service)
        await pubsub.send_all(kafka, [prepared])
        good.add(event_id)

    # Every other source goes on: each member event is delivered.
    outs = [
        topics.outbound(r, "return_arrival") for r in sorted(service.policy.institutions)
    ]
    delivered = await collect(
        kafka,
        outs,
        lambda r: header(r, "ce_id") in good and header(r, "puente_view") == "FULL",
        expected=STRAYS,
        timeout=90,
    )
    assert {header(r, "ce_id") for r in delivered} == good

    # The stranger's partition is held at its first record, uncommitted.
    def held() -> bool:
        # Counted with any other partition the session's node left without its
        # rejection topic: this router reads every hub.in topic there.
        waiting = service.router.held.waiting
        counted = registry.get_sample_value(HELD) == len(waiting)
        return counted and waiting.get(held_tp) == rejected

    await eventually(held, 60, f"{inbound} held and counted")
    assert (registry.get_sample_value(HELD) or 0) >= 1
    assert await committed(kafka, service.settings.group_id, held_tp) in (
        None,
        strays[0],
    )
    assert errors_naming(caplog, rejected)
    # Names and offsets only: never a record's content.
    assert all("stray" not in r.getMessage() for r in caplog.records)

    # Once an admin creates the rejection topic, every held record is answered once.
    await runtime_topics.create(kafka, {rejected: 1})
    answers = await collect(
        kafka, [rejected], lambda r: True, expected=STRAYS, timeout=120, settle=3
    )
    decoded = [codec.decode(service.catalog, r.value, plain=True)[1] for r in answers]
    assert sorted(d["original_offset"] for d in decoded) == strays
    assert {(d["original_topic"], d["reason"]) for d in decoded} == {
        (inbound, "undecodable")
    }
    await eventually(lambda: not held(), 60, f"{inbound} no longer held")
    assert registry.get_sample_value(HELD) == len(service.router.held.waiting)

    async def committed_past() -> bool:
        position = await committed(kafka, service.settings.group_id, held_tp)
        return position == strays[-1] + 1

    await eventually(committed_past, 60, f"{inbound} committed past its last record")
    assert len(errors_naming(caplog, rejected)) == 1
