"""The audit service on the embedded broker: ingestion, checkpoints, resume, API."""

from __future__ import annotations

import asyncio
import socket
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from prometheus_client import CollectorRegistry

from services.audit.api import reading, verify_ledger
from services.audit.app import AuditService, AuditTopicMissingError, build_service
from services.audit.checkpoints import from_datum
from services.audit.ledger import Ledger
from services.audit.settings import AuditSettings
from services.contracts import codec
from services.contracts.catalog import Catalog
from services.runtime import topics as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.kafka import admin_config
from services.runtime.settings import HubSettings, KafkaSettings
from tests.support.kafka import collect, produce
from tests.unit.audit.support import SUBJECT, encoded, many

pytestmark = pytest.mark.integration


def settings_for(
    kafka: KafkaSettings, state_dir: Path, unique: str, **extra: Any
) -> AuditSettings:
    return AuditSettings(
        port=free_port(),
        topic=f"hub.audit.{unique}",
        checkpoint_topic=f"hub.audit.checkpoints.{unique}",
        group_id=f"audit-{unique}",
        hub=HubSettings(state_dir=state_dir),
        kafka=kafka,
        **extra,
    )


async def send(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    await produce(kafka, [(topic, b"k", v, []) for v in values])


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def count(service: AuditService) -> int:
    return int(service.health()["entries"])


async def test_entries_are_appended_once_each_and_checkpoints_are_published(
    kafka: KafkaSettings,
    catalog: Catalog,
    state_dir: Path,
    unique: str,
    registry: CollectorRegistry,
) -> None:
    settings = settings_for(kafka, state_dir, unique, checkpoint_every=25)
    await runtime_topics.create(kafka, {settings.topic: 1})
    values = [encoded(catalog, d) for d in many(60)]
    await send(kafka, settings.topic, [*values, *values[10:20], b"not avro"])
    service = build_service(settings, registry)
    await service.start()
    try:
        await until(
            lambda: count(service) == 60 and service.health()["last_checkpoint_seq"] >= 50
        )
        await until(
            lambda: registry.get_sample_value("puente_audit_records_skipped_total") == 1
        )
        assert registry.get_sample_value("puente_audit_duplicates_skipped_total") == 10
        assert registry.get_sample_value("puente_audit_entries_appended_total") == 60
        committed = await committed_offset(kafka, settings.group_id, settings.topic)
    finally:
        await service.stop()
    result = verify_ledger(settings.ledger_file)
    assert result.ok, result.problems
    assert (result.entries, result.last_checkpoint_seq) == (60, 60)  # stop signs the rest
    assert committed == 71
    with reading(settings.ledger_file) as ledger:
        stored = [c.seq for c in ledger.checkpoints()]
        heads = {r.seq: r.hash for r in ledger.rows()}
        assert ledger.checkpoints(unpublished_only=True) == []
    records = await collect(
        kafka, [settings.checkpoint_topic], lambda r: True, expected=len(stored)
    )
    points = [from_datum(codec.decode(catalog, r.value)[1]) for r in records]
    assert [p.seq for p in points] == stored
    for point in points:
        assert point.valid_under(point.public_key)
        assert point.head == heads[point.seq]


async def committed_offset(kafka: KafkaSettings, group: str, topic: str) -> int | None:
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-admin"))
    await admin.start()
    try:
        tp = TopicPartition(topic, 0)
        offsets = await admin.list_consumer_group_offsets(group, partitions=[tp])
        return offsets[tp].offset if tp in offsets else None
    finally:
        await admin.close()


async def test_a_restart_resumes_at_the_ledgers_positions_not_kafkas(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    first = settings_for(kafka, state_dir, unique)
    await runtime_topics.create(kafka, {first.topic: 1})
    datums = many(40)
    await send(kafka, first.topic, [encoded(catalog, d) for d in datums[:25]])
    service = build_service(first, CollectorRegistry())
    await service.start()
    await until(lambda: count(service) == 25)
    await service.stop()
    await send(kafka, first.topic, [encoded(catalog, d) for d in datums[25:]])
    # A new group has no committed offsets: only the ledger knows where to resume.
    second = first.model_copy(update={"group_id": f"other-{unique}", "port": free_port()})
    registry = CollectorRegistry()
    service = build_service(second, registry)
    await service.start()
    try:
        await until(lambda: count(service) == 40)
        await asyncio.sleep(0.5)
        assert registry.get_sample_value("puente_audit_duplicates_skipped_total") == 0
        assert registry.get_sample_value("puente_audit_entries_appended_total") == 15
    finally:
        await service.stop()
    assert verify_ledger(second.ledger_file).ok


async def test_the_running_service_answers_queries_health_and_metrics(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    await runtime_topics.create(kafka, {settings.topic: 1})
    datums = many(6)
    await send(kafka, settings.topic, [encoded(catalog, d) for d in datums])
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        await until(lambda: count(service) == 6)
        base = f"http://127.0.0.1:{settings.port}"
        async with httpx.AsyncClient(base_url=base, timeout=10) as http:
            health = (await http.get("/health")).json()
            event = str(datums[0]["event_id"])
            recipients = (await http.get(f"/v1/events/{event}/recipients")).json()
            report = (await http.get(f"/v1/subjects/{SUBJECT}/report")).json()
            verified = (await http.get("/v1/verify")).json()
            metrics = (await http.get("/metrics")).text
    finally:
        await service.stop()
    assert health["ok"] is True
    assert recipients["recipients"] == [datums[0]["recipient_institution_id"]]
    assert sum(i["deliveries"] for i in report["institutions"]) == 6
    assert verified["ok"] is True
    assert "puente_audit_ledger_entries 6.0" in metrics
    assert "puente_audit_consumer_lag 0.0" in metrics


async def test_a_failed_start_releases_the_ledger_and_the_port(
    kafka: KafkaSettings, state_dir: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    service = build_service(settings, CollectorRegistry())

    async def no_partitions(*_: object) -> None:
        raise AuditTopicMissingError("simulated")

    monkeypatch.setattr(service, "_resume", no_partitions)
    with pytest.raises(AuditTopicMissingError):
        await service.start()
    Ledger.open_writer(settings.ledger_file).close()  # not locked any more
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", settings.port))  # the ops port was released
    assert service.health()["ok"] is False
