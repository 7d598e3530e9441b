"""A router with the production router's rights only, and a source it cannot answer.

Shared by the tests of a missing and of a deleted ``hub.rejected.<source>``: a SCRAM
user holding exactly the ACL plan's router bindings (no CREATE anywhere), a source
the policy does not name, and the checks they make (committed offsets, ERROR lines,
a member's events).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import logging
import secrets
import time
import uuid
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import pytest
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

HELD = "puente_router_partitions_held"


def router_principal(apache_kafka: LocalKafka, name: str) -> KafkaSettings:
    """A SCRAM user holding the production router's bindings, its group named ``name``.

    The bindings come from the ACL plan itself (no CREATE on anything).
    """
    password = secrets.token_hex(16)
    services = ServicePrincipals(router=name, router_group=name)
    bindings = [b for b in service_bindings(services) if b.principal == user(name)]
    with KafkaAcls(apache_kafka.settings()) as acls:
        assert acls.set_scram({name: password}) == {}
        assert acls.create(bindings) == []
    return apache_kafka.settings(name, password)


@contextlib.asynccontextmanager
async def admin(kafka: KafkaSettings) -> AsyncIterator[AIOKafkaAdminClient]:
    """An admin client for the test's own look at the broker."""
    client = AIOKafkaAdminClient(**admin_config(kafka, "test-held-router-admin"))
    await client.start()
    try:
        yield client
    finally:
        await client.close()


async def exists(kafka: KafkaSettings, topic: str) -> bool:
    """Whether the broker lists ``topic``."""
    async with admin(kafka) as client:
        return topic in await client.list_topics()


async def committed(kafka: KafkaSettings, group: str, tp: TopicPartition) -> int | None:
    """``group``'s committed offset of ``tp`` (None: none)."""
    async with admin(kafka) as client:
        offsets = await client.list_consumer_group_offsets(group, partitions=[tp])
    found = offsets.get(tp)
    return None if found is None or found.offset < 0 else found.offset


async def eventually(check: Callable[[], Any], timeout: float, what: str) -> None:
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


@contextlib.asynccontextmanager
async def stranger_source(
    kafka: KafkaSettings, prefix: str, *, rejected: bool
) -> AsyncIterator[str]:
    """A source the policy does not name, with an inbound topic (and a rejected one)."""
    name = f"{prefix}_{uuid.uuid4().hex[:8]}"
    inbound = topics.inbound(name, "referral")
    wanted = {inbound: 1} | ({topics.rejected(name): 1} if rejected else {})
    await runtime_topics.create(kafka, wanted)
    try:
        yield name
    finally:
        # Every later router of the session reads every hub.in topic: leave none.
        async with admin(kafka) as client:
            await client.delete_topics([inbound])
            if topics.rejected(name) in await client.list_topics():
                await client.delete_topics([topics.rejected(name)])


@contextlib.asynccontextmanager
async def restricted_router(
    apache_kafka: LocalKafka,
    kafka: KafkaSettings,
    state: Path,
    *,
    transactions: str,
    prefix: str,
) -> AsyncIterator[tuple[RouterService, CollectorRegistry]]:
    """A router under a principal with the production router's rights only."""
    name = f"{prefix}-{uuid.uuid4().hex[:8]}"
    principal = await asyncio.to_thread(router_principal, apache_kafka, name)
    settings = RouterSettings(
        group_id=name,
        port=free_port(),
        hub=HubSettings(state_dir=state),
        kafka=principal,
        transactions=transactions,
    )
    registry = CollectorRegistry()
    service = build_service(settings, registry)
    # The hub's topics are the init job's: the router may not create them.
    wanted = runtime_topics.plan(
        settings.topics, service.policy.publish_rights, service.policy.receive_rights
    )
    await runtime_topics.create(kafka, wanted)
    await service.start()
    assert service.router.transactional is (transactions == "auto")
    try:
        yield service, registry
    finally:
        await service.stop()


def errors_naming(
    caplog: pytest.LogCaptureFixture, topic: str, logger: str = ""
) -> list[str]:
    """ERROR lines (of loggers under ``logger``) that name ``topic``."""
    return [
        r.getMessage()
        for r in caplog.records
        if r.levelno >= logging.ERROR
        and topic in r.getMessage()
        and r.name.startswith(logger)
    ]


def original_offsets(service: RouterService, answers: list[Any]) -> list[int]:
    """The inbound offsets the rejections in ``answers`` answer, in order."""
    decoded = [codec.decode(service.catalog, r.value, plain=True)[1] for r in answers]
    return sorted(d["original_offset"] for d in decoded)


def member_event(service: RouterService) -> tuple[str, Any]:
    """A fresh dgme return arrival, ready to send, and its event id."""
    event = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
    event_id = str(uuid.uuid4())
    event["envelope"]["event_id"] = event_id
    return event_id, pubsub.prepare(service.catalog, "return_arrival", "dgme", event)
