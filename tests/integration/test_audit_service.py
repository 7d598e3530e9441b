"""The audit service on the embedded broker: ingestion, checkpoints, resume, API."""

from __future__ import annotations

import asyncio
import shutil
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
from prometheus_client.parser import text_string_to_metric_families

from services.audit.api import reading, verify_ledger
from services.audit.app import AuditService, AuditTopicMissingError, build_service
from services.audit.checkpoints import from_datum
from services.audit.credentials import CredentialStore, Role
from services.audit.ledger import Ledger, LedgerError
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys
from services.contracts import codec
from services.contracts.catalog import Catalog
from services.runtime import topic_admin as runtime_topics
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


async def with_topic(kafka: KafkaSettings, state_dir: Path, unique: str) -> AuditSettings:
    """The test's settings, with its audit topic created (one partition)."""
    settings = settings_for(kafka, state_dir, unique)
    await runtime_topics.create(kafka, {settings.topic: 1})
    return settings


async def send(kafka: KafkaSettings, topic: str, values: list[bytes]) -> None:
    await produce(kafka, [(topic, b"k", v, []) for v in values])


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


def count(service: AuditService) -> int:
    return int(service.health()["entries"])


def sample(registry: CollectorRegistry, name: str, **labels: str) -> float:
    """The sum of ``name``'s samples whose labels include ``labels``."""
    return sum(
        s.value
        for family in registry.collect()
        for s in family.samples
        if s.name == name and labels.items() <= s.labels.items()
    )


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
    result = verify_ledger(settings.ledger_file, pinned_keys(settings))
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


async def test_a_quiet_ledger_is_checkpointed_once_checkpoint_seconds_passed(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(
        kafka, state_dir, unique, checkpoint_every=1000, checkpoint_seconds=1.0
    )
    await runtime_topics.create(kafka, {settings.topic: 1})
    await send(kafka, settings.topic, [encoded(catalog, d) for d in many(5)])
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        # No batch arrives after the first: the time-based checkpoint comes anyway.
        await until(lambda: service.health()["last_checkpoint_seq"] == 5, within=10)
    finally:
        await service.stop()


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
    assert verify_ledger(second.ledger_file, pinned_keys(second)).ok


async def test_the_running_service_answers_queries_health_and_metrics(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = await with_topic(kafka, state_dir, unique)
    datums = many(6)
    await send(kafka, settings.topic, [encoded(catalog, d) for d in datums])
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        await until(lambda: count(service) == 6)
        base = f"http://127.0.0.1:{settings.port}"
        store = CredentialStore(settings.credentials_file)
        _, token = store.create(Role.OVERSIGHT)
        store.close()
        bearer = {"Authorization": f"Bearer {token}"}
        async with httpx.AsyncClient(base_url=base, timeout=10, headers=bearer) as http:
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
    # FastStream's own consumer series, on the audit service's registry.
    received = {
        s.labels.get("handler"): s.value
        for family in text_string_to_metric_families(metrics)
        for s in family.samples
        if s.name == "faststream_received_messages_total"
        and s.labels.get("app_name") == "audit"
    }
    assert received == {settings.topic: 6.0}


async def test_a_failed_start_releases_the_ledger_and_the_port(
    kafka: KafkaSettings, state_dir: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    service = build_service(settings, CollectorRegistry())

    async def no_partitions(*_: object) -> None:
        raise AuditTopicMissingError("simulated")

    monkeypatch.setattr(service, "_partitions", no_partitions)
    with pytest.raises(AuditTopicMissingError):
        await service.start()
    Ledger.open_writer(settings.ledger_file).close()  # not locked any more
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", settings.port))  # the ops port was released
    assert service.health()["ok"] is False


def ledger_files(ledger: Path) -> list[Path]:
    return sorted(ledger.parent.glob(ledger.name + "*"))


async def test_a_ledger_behind_kafkas_committed_offset_is_caught_up_with_no_gap(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str, tmp_path: Path
) -> None:
    settings = await with_topic(kafka, state_dir, unique)
    datums = many(45)
    values = [encoded(catalog, d) for d in datums]
    backup = tmp_path / "backup"
    backup.mkdir()

    async def run_until_count(entries: int) -> CollectorRegistry:
        registry = CollectorRegistry()
        service = build_service(
            settings.model_copy(update={"port": free_port()}), registry
        )
        await service.start()
        try:
            await until(lambda: count(service) == entries)
            await asyncio.sleep(0.5)  # anything appended twice would show up now
        finally:
            await service.stop()
        return registry

    await send(kafka, settings.topic, values[:15])
    await run_until_count(15)
    for path in ledger_files(settings.ledger_file):
        shutil.copy2(path, backup / path.name)
    await send(kafka, settings.topic, values[15:30])
    await run_until_count(30)
    assert await committed_offset(kafka, settings.group_id, settings.topic) == 30
    # The ledger file is replaced by its older copy: Kafka's offset is ahead of it.
    for path in ledger_files(settings.ledger_file):
        path.unlink()
    for path in backup.iterdir():
        shutil.copy2(path, settings.ledger_file.parent / path.name)
    await send(kafka, settings.topic, values[30:])
    registry = await run_until_count(45)

    assert registry.get_sample_value("puente_audit_entries_appended_total") == 30
    assert registry.get_sample_value("puente_audit_duplicates_skipped_total") == 0
    with reading(settings.ledger_file) as ledger:
        rows = list(ledger.rows())
    assert [r.seq for r in rows] == list(range(1, 46))
    assert [r.audit_id for r in rows] == [str(d["audit_id"]) for d in datums]
    assert verify_ledger(settings.ledger_file, pinned_keys(settings)).ok


def fail_appends(monkeypatch: pytest.MonkeyPatch, times: int | None) -> list[int]:
    """Make the ledger refuse its next ``times`` batches (None: every batch)."""
    original = Ledger.append
    refused: list[int] = []

    def append(self: Ledger, *args: Any) -> Any:
        if times is None or len(refused) < times:
            refused.append(len(args[0]))
            raise LedgerError("simulated: the disk is full")
        return original(self, *args)

    monkeypatch.setattr(Ledger, "append", append)
    return refused


async def test_a_batch_the_ledger_refuses_is_read_again_and_stored_once(
    kafka: KafkaSettings,
    catalog: Catalog,
    state_dir: Path,
    unique: str,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = await with_topic(kafka, state_dir, unique)
    refused = fail_appends(monkeypatch, times=1)
    await send(kafka, settings.topic, [encoded(catalog, d) for d in many(20)])
    service = build_service(settings, registry)
    await service.start()
    try:
        await until(lambda: count(service) == 20)
        assert service.health()["ok"] is True  # healthy again once a batch is stored
    finally:
        await service.stop()
    assert len(refused) == 1
    assert registry.get_sample_value("puente_audit_ingest_failures_total") == 1
    failed = "faststream_received_processed_messages_exceptions_total"
    assert sample(registry, failed, app_name="audit", exception_type="LedgerError") == 1
    assert registry.get_sample_value("puente_audit_entries_appended_total") == 20
    assert registry.get_sample_value("puente_audit_duplicates_skipped_total") == 0
    result = verify_ledger(settings.ledger_file, pinned_keys(settings))
    assert result.ok, result.problems
    assert result.entries == 20


async def test_run_until_ends_with_the_ledgers_error_and_the_next_run_loses_nothing(
    kafka: KafkaSettings,
    catalog: Catalog,
    state_dir: Path,
    unique: str,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    settings = await with_topic(kafka, state_dir, unique)
    fail_appends(monkeypatch, times=None)
    await send(kafka, settings.topic, [encoded(catalog, d) for d in many(8)])
    service = build_service(settings, CollectorRegistry())
    with pytest.raises(LedgerError, match="simulated"):
        await asyncio.wait_for(service.run_until(asyncio.Event()), 60)
    assert service.health()["ok"] is False
    # Nothing was stored, so nothing was committed either.
    assert await committed_offset(kafka, settings.group_id, settings.topic) in (None, -1)

    monkeypatch.undo()
    again = build_service(
        settings.model_copy(update={"port": free_port()}), CollectorRegistry()
    )
    await again.start()
    try:
        await until(lambda: count(again) == 8)
    finally:
        await again.stop()
    assert verify_ledger(settings.ledger_file, pinned_keys(settings)).entries == 8
