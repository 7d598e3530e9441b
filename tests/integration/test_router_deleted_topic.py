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

import asyncio
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from services.acl import ServicePrincipals
from services.acl.admin import KafkaAcls
from services.acl.plan import service_bindings, user
from services.contracts import codec, topics
from services.kafkalocal import LocalKafka
from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime import pubsub
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.kafka import admin_config
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import collect, header, produce

pytestmark = [pytest.mark.integration, pytest.mark.slow, pytest.mark.timeout(300)]
HELD = "puente_router_partitions_held"
STRAYS = 3
# How long the other sources may wait while the deleted topic is found out: a send's
# metadata wait and one retry, well below the stall it replaces (for ever).
OTHERS_WAIT = 90.0


def _router_principal(apache_kafka: LocalKafka, name: str) -> KafkaSettings:
    """A SCRAM user holding the production router's bindings (no CREATE anywhere)."""
    password = secrets.token_hex(16)
    services = ServicePrincipals(router=name, router_group=name)
    bindings = [b for b in service_bindings(services) if b.principal == user(name)]
    with KafkaAcls(apache_kafka.settings()) as acls:
        assert acls.set_scram({name: password}) == {}
        assert acls.create(bindings) == []
    return apache_kafka.settings(name, password)


async def _admin(kafka: KafkaSettings) -> AIOKafkaAdminClient:
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-deleted-topic-admin"))
    await admin.start()
    return admin


async def _exists(kafka: KafkaSettings, topic: str) -> bool:
    admin = await _admin(kafka)
    try:
        return topic in await admin.list_topics()
    finally:
        await admin.close()


async def _delete(kafka: KafkaSettings, topic: str) -> None:
    admin = await _admin(kafka)
    try:
        await admin.delete_topics([topic])
    finally:
        await admin.close()


async def _committed(kafka: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    admin = await _admin(kafka)
    try:
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
    finally:
        await admin.close()
    found = offsets.get(tp)
    return None if found is None or found.offset < 0 else found.offset


async def _eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
    """Wait until ``check()`` (sync or async) is true; fail naming ``what``."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if asyncio.iscoroutine(result):
            result = await result
        if result:
            return
        assert time.monotonic() < deadline, f"not within {timeout:.0f} s: {what}"
        await asyncio.sleep(0.5)


@pytest_asyncio.fixture(loop_scope="session")
async def stranger(kafka: KafkaSettings) -> AsyncIterator[str]:
    """A source the policy does not name, with an inbound and a rejection topic."""
    name = f"gone_{uuid.uuid4().hex[:8]}"
    inbound, rejected = topics.inbound(name, "referral"), topics.rejected(name)
    await runtime_topics.create(kafka, {inbound: 1, rejected: 1})
    yield name
    # Every later router of the session reads every hub.in topic: leave none behind.
    admin = await _admin(kafka)
    try:
        await admin.delete_topics([inbound])
        if rejected in await admin.list_topics():
            await admin.delete_topics([rejected])
    finally:
        await admin.close()


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
    name = f"deleted-router-{uuid.uuid4().hex[:8]}"
    principal = await asyncio.to_thread(_router_principal, apache_kafka, name)
    settings = RouterSettings(
        group_id=name,
        port=free_port(),
        hub=HubSettings(state_dir=tmp_path),
        kafka=principal,
        transactions=request.param,
    )
    registry = CollectorRegistry()
    service = build_service(settings, registry)
    # The hub's topics are the init job's: the router may not create them.
    wanted = runtime_topics.plan(
        settings.topics, service.policy.publish_rights, service.policy.receive_rights
    )
    await runtime_topics.create(kafka, wanted)
    await service.start()
    assert service.router.transactional is (request.param == "auto")
    yield service, registry
    await service.stop()


def _errors_naming(
    caplog: pytest.LogCaptureFixture, topic: str, logger: str = ""
) -> list[str]:
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and topic in r.getMessage()
        and r.name.startswith(logger)
    ]


def _good(service: RouterService) -> tuple[str, Any]:
    event = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
    event_id = str(uuid.uuid4())
    event["envelope"]["event_id"] = event_id
    return event_id, pubsub.prepare(service.catalog, "return_arrival", "dgme", event)


def _originals(service: RouterService, answers: list[Any]) -> list[int]:
    decoded = [codec.decode(service.catalog, r.value, plain=True)[1] for r in answers]
    return sorted(d["original_offset"] for d in decoded)


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
    assert _originals(service, answered) == [first]

    # An admin deletes it while the router runs.
    await _delete(kafka, rejected)
    await _eventually(lambda: _exists_not(kafka, rejected), 60, f"{rejected} deleted")

    # More of the stranger's records and a member's events, interleaved.
    strays: list[int] = []
    good: set[str] = set()
    for n in range(STRAYS):
        [(_, _, offset)] = await produce(kafka, [(inbound, None, b"\x00stray%d" % n, [])])
        strays.append(offset)
        event_id, prepared = _good(service)
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

    await _eventually(held, 60, f"{inbound} held and counted")
    assert await _committed(kafka, service.settings.group_id, held_tp) == strays[0]
    assert _errors_naming(caplog, rejected)
    # Names and offsets only: never a record's content.
    assert all("stray" not in r.getMessage() for r in caplog.records)

    # Once an admin creates the topic again, every held record is answered once.
    await _eventually(
        lambda: _created(kafka, rejected), 60, f"{rejected} created again by the admin"
    )
    answers = await collect(
        kafka, [rejected], lambda r: True, expected=STRAYS, timeout=120, settle=3
    )
    assert _originals(service, answers) == strays
    await _eventually(lambda: not held(), 60, f"{inbound} no longer held")
    assert registry.get_sample_value(HELD) == len(service.router.held.waiting)

    async def committed_past() -> bool:
        position = await _committed(kafka, service.settings.group_id, held_tp)
        return position == strays[-1] + 1

    await _eventually(committed_past, 60, f"{inbound} committed past its last record")
    assert len(_errors_naming(caplog, rejected, "services.")) == 1
    # aiokafka logs an ERROR line for each metadata update that lacks the topic; the
    # producer that asks for it is closed at the first (it used to ask in a tight
    # loop until its request timeout: thousands of lines).
    assert len(_errors_naming(caplog, rejected)) <= 10


async def _exists_not(kafka: KafkaSettings, topic: str) -> bool:
    return not await _exists(kafka, topic)


async def _created(kafka: KafkaSettings, topic: str) -> bool:
    """Create ``topic``; False while the broker still finishes deleting it."""
    try:
        await runtime_topics.create_topic(kafka, topic, 1)
    except runtime_topics.TopicBootstrapError:  # still being deleted: try again
        return False
    return await _exists(kafka, topic)
