"""The relay gives up on a record the broker can never take, and goes on with the rest.

In the refused record's place it sends a refusal notice: no value, the record's
CloudEvents headers and the refusal's (the router answers it to the publisher).
Rows are put straight into the outbox, as a gateway from before the size checks
stored them; the relay then runs against the session's broker.
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
from aiokafka.errors import MessageSizeTooLargeError, RequestTimedOutError
from prometheus_client import CollectorRegistry

from services.contracts import headers
from services.gateway import relay
from services.gateway.app import GatewayService
from services.gateway.deliveries import TopicReader
from services.gateway.outbox import Entry, encode_headers
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings
from tests.support.kafka import create_inbound, header

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


async def relayed(kafka: KafkaSettings, topic: str, expected: int) -> list[Any]:
    """The first ``expected`` records of ``topic`` (one partition), in order."""
    reader = TopicReader(kafka, wait_ms=1000, size=1)
    records: list[Any] = []
    cursor: dict[int, int] = {}
    deadline = time.monotonic() + 20
    try:
        while len(records) < expected and time.monotonic() < deadline:
            page = await reader.read(topic, cursor, 100)
            records += page.records
            cursor = page.cursor
    finally:
        await reader.close()
    return records


def ids_of(records: list[Any]) -> list[str | None]:
    return [header(r, "ce_id") for r in records]


def notices(records: list[Any]) -> list[tuple[str | None, dict[str, str | None]]]:
    """(event id, refusal headers) of the refusal notices among ``records``."""
    names = (headers.REFUSED, headers.REFUSED_BYTES, headers.REFUSED_LIMIT)
    return [
        (header(r, "ce_id"), {n: header(r, n) for n in names})
        for r in records
        if not r.value and header(r, headers.REFUSED) is not None
    ]


async def settled(service: GatewayService, deadline_s: float = 20) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if service.gateway.outbox.unsent_count == 0:
            return True
        await asyncio.sleep(0.1)
    return False


async def metrics_text(service: GatewayService) -> str:
    url = f"http://127.0.0.1:{service.settings.admin_port}/metrics"
    async with httpx.AsyncClient(timeout=10) as http:
        return (await http.get(url)).text


async def refused_metric(service: GatewayService) -> str:
    return next(
        (
            line
            for line in (await metrics_text(service)).splitlines()
            if line.startswith("puente_relay_refused_")
        ),
        "",
    )


async def metric(service: GatewayService, name: str) -> float:
    found = [
        float(line.rsplit(" ", 1)[1])
        for line in (await metrics_text(service)).splitlines()
        if line.split(" ")[0] == name
    ]
    assert len(found) == 1, f"{name} not exported"
    return found[0]


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
    records = await relayed(kafka, rows[0].topic, 4)
    refused = await service.gateway.outbox.refused()

    assert ROUTER_LIMIT < RECORD_LIMIT < 4 * 1024 * 1024
    assert ids_of(records) == [r.event_id for r in rows]
    size = 4 * 1024 * 1024 + len(b"one-key") + len("ce_id") + 36
    assert notices(records) == [
        (
            rows[1].event_id,
            {
                headers.REFUSED: "too_large",
                headers.REFUSED_BYTES: str(size),
                headers.REFUSED_LIMIT: str(RECORD_LIMIT),
            },
        )
    ]
    assert records[1].key == b"one-key"
    assert [(event_id, why) for _, event_id, why in refused] == [
        (rows[1].event_id, "too_large")
    ]
    assert await refused_metric(service) == (
        'puente_relay_refused_total{reason="too_large"} 1.0'
    )
    assert await metric(service, "puente_relay_refusals_reported_total") == 1.0
    assert await metric(service, "puente_relay_refusals_unreported") == 0.0


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
    records = await relayed(kafka, rows[0].topic, 4)
    refused = await service.gateway.outbox.refused()

    big = sizes.index(200_000)
    assert ids_of(records) == [r.event_id for r in rows]
    # The broker does not say what it takes: the notice names no limit.
    assert notices(records) == [
        (
            rows[big].event_id,
            {
                headers.REFUSED: "too_large",
                headers.REFUSED_BYTES: str(200_000 + len(b"one-key") + len("ce_id") + 36),
                headers.REFUSED_LIMIT: None,
            },
        )
    ]
    assert [event_id for _, event_id, _ in refused] == [rows[big].event_id]
    assert "1.0" in await refused_metric(service)
    assert await metric(service, "puente_relay_refusals_reported_total") == 1.0


def picky_broker(
    monkeypatch: pytest.MonkeyPatch, broker_limit: int, *, then_fail: int = 0
) -> dict[str, int]:
    """Refuse batches above ``broker_limit`` as Apache Kafka does; count what it did.

    ``then_fail``: after the first refusal, that many sends fail as a broker that
    stopped answering would fail them.
    """
    send_batch = AIOKafkaProducer.send_batch
    seen = {"too_large": 0, "failed": 0}

    async def picky(self: Any, batch: Any, topic: str, *, partition: int) -> Any:
        answer: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
        if batch.size() > broker_limit:
            seen["too_large"] += 1
            answer.set_exception(MessageSizeTooLargeError())
            return answer
        if seen["too_large"] and seen["failed"] < then_fail:
            seen["failed"] += 1
            answer.set_exception(RequestTimedOutError())
            return answer
        return await send_batch(self, batch, topic, partition=partition)

    monkeypatch.setattr(AIOKafkaProducer, "send_batch", picky)
    return seen


async def test_a_notice_the_broker_cannot_take_yet_is_sent_again_and_reported_once(
    service: GatewayService,
    kafka: KafkaSettings,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    seen = picky_broker(monkeypatch, 100_000, then_fail=2)
    source = f"t{unique}"
    await create_inbound(kafka, {f"hub.in.{source}.referral": 1})
    rows = [row(source, size) for size in (100, 200_000, 100)]
    await service.gateway.outbox.append(rows)

    assert await settled(service), "the relay is stuck on the notice"
    records = await relayed(kafka, rows[0].topic, 4)

    # At least once: the first row, stored before the failure, is sent again.
    assert list(dict.fromkeys(ids_of(records))) == [r.event_id for r in rows]
    assert [event_id for event_id, _ in notices(records)] == [rows[1].event_id]
    assert seen == {"too_large": 1, "failed": 2}, "the refused row was sent again"
    assert await service.gateway.outbox.unreported() == []
    assert await refused_metric(service) == (
        'puente_relay_refused_total{reason="too_large"} 1.0'
    )
    assert await metric(service, "puente_relay_refusals_reported_total") == 1.0
    assert await metric(service, "puente_relay_errors_total") >= 2.0


async def test_a_notice_the_broker_refuses_as_well_is_given_up_and_the_rest_flow(
    service: GatewayService,
    kafka: KafkaSettings,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    picky_broker(monkeypatch, 100_000)
    notice_headers = relay.notice_headers

    def huge(pending: Any, refusal: Any) -> Any:
        return [*notice_headers(pending, refusal), ("padding", b"\x00" * 200_000)]

    monkeypatch.setattr(relay, "notice_headers", huge)
    source = f"t{unique}"
    await create_inbound(kafka, {f"hub.in.{source}.referral": 1})
    rows = [row(source, size) for size in (100, 200_000, 100)]
    await service.gateway.outbox.append(rows)

    assert await settled(service), "the relay is stuck on the refused notice"
    records = await relayed(kafka, rows[0].topic, 2)
    refused = await service.gateway.outbox.refused()

    assert ids_of(records) == [rows[0].event_id, rows[2].event_id]
    assert [event_id for _, event_id, _ in refused] == [rows[1].event_id]
    assert await service.gateway.outbox.unreported() == [refused[0][0]]
    assert await metric(service, "puente_relay_refusals_reported_total") == 0.0
    assert await metric(service, "puente_relay_refusals_unreported") == 1.0
