"""`puente audit verify` against Kafka: the audit topic read to its end, and the
checkpoint topic (kept without time limit) as the record outside the ledger."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.admin.config_resource import ConfigResource, ConfigResourceType
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.audit.app import AuditService, build_service
from services.audit.cli import app
from services.audit.settings import AuditSettings
from services.contracts import codec
from services.contracts.catalog import Catalog
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.kafka import admin_config
from services.runtime.settings import HubSettings, KafkaSettings
from tests.support.kafka import kafka_env, produce
from tests.unit.audit.support import encoded, many
from tests.unit.audit.tamper import tamper

pytestmark = pytest.mark.integration
runner = CliRunner()


def settings_for(
    kafka: KafkaSettings, state_dir: Path, unique: str, witness: Path | None = None
) -> AuditSettings:
    return AuditSettings(
        port=free_port(),
        topic=f"hub.audit.{unique}",
        checkpoint_topic=f"hub.audit.checkpoints.{unique}",
        group_id=f"audit-{unique}",
        checkpoint_every=10,
        witness_file=witness,
        hub=HubSettings(state_dir=state_dir),
        kafka=kafka,
    )


@pytest.fixture(autouse=True)
def environment(
    kafka: KafkaSettings, state_dir: Path, unique: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """What the CLI reads: the broker's principal, the state dir (so the signing key)
    and the topics."""
    for name, value in kafka_env(kafka).items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("PUENTE_STATE_DIR", str(state_dir))
    monkeypatch.setenv("PUENTE_AUDIT_TOPIC", f"hub.audit.{unique}")
    monkeypatch.setenv("PUENTE_AUDIT_CHECKPOINT_TOPIC", f"hub.audit.checkpoints.{unique}")
    for name in (
        "PUENTE_AUDIT_VERIFY_KEY",
        "PUENTE_AUDIT_VERIFY_KEY_FILE",
        "PUENTE_AUDIT_WITNESS_FILE",
        "PUENTE_AUDIT_LEDGER_PATH",
    ):
        monkeypatch.delenv(name, raising=False)


async def until(check: Callable[[], bool], within: float = 30.0) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.1)


async def ingest(settings: AuditSettings, values: list[bytes], entries: int) -> None:
    """Run the audit service until the ledger holds ``entries``, then stop it."""
    await runtime_topics.create(settings.kafka, {settings.topic: 1})
    await produce(settings.kafka, [(settings.topic, b"k", v, []) for v in values])
    service: AuditService = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        await until(lambda: service.health()["entries"] == entries)
        await asyncio.sleep(0.5)  # a skipped record after the last entry lands too
    finally:
        await service.stop()


def verify(settings: AuditSettings, *options: str) -> tuple[int, str]:
    args = ["verify", "--ledger", str(settings.ledger_file), *options]
    result = runner.invoke(app, args)
    return result.exit_code, result.output


def against(settings: AuditSettings) -> tuple[str, ...]:
    return (
        "--against-kafka",
        "--bootstrap-servers",
        str(settings.kafka.bootstrap_servers),
    )


def bad_entry(catalog: Catalog) -> bytes:
    """An audit entry whose event id is not a UUID (what the router once let through)."""
    entry = catalog.get("audit_entry", 1)
    _, plain = codec.decode(catalog, encoded(catalog, many(1)[0]), plain=True)
    plain["event_id"] = "ORDER-4711"
    return codec.encode(entry, plain, plain=True)


async def test_verify_against_kafka_passes_when_the_ledger_holds_the_whole_topic(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    await ingest(settings, [encoded(catalog, d) for d in many(25)], 25)
    code, output = await asyncio.to_thread(verify, settings, *against(settings))
    assert code == 0, output
    assert "compared with the audit topic read to its end" in output
    assert f"the newest at seq 25 ({settings.checkpoint_topic}" in output


async def test_verify_against_kafka_fails_on_a_skipped_record_the_ledger_lacks(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    values = [encoded(catalog, d) for d in many(5)]
    await ingest(settings, [*values[:2], bad_entry(catalog), *values[2:]], 5)
    plain_code, _ = await asyncio.to_thread(verify, settings)
    assert plain_code == 0  # the ledger itself is intact ...
    code, output = await asyncio.to_thread(verify, settings, *against(settings))
    assert code == 1  # ... but it lacks a disclosure that Kafka holds
    assert "first broken: kafka 0: records_skipped" in output
    assert "the ledger refused 1 records of" in output
    assert "also kafka 0: not_in_ledger: 1 entries of" in output
    assert "at partition 0 offset 2" in output


async def test_verify_against_kafka_fails_on_entries_cut_from_the_ledger(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    await ingest(settings, [encoded(catalog, d) for d in many(25)], 25)
    tamper(
        settings.ledger_file,
        ("DELETE FROM entries WHERE seq > 10", ()),
        ("DELETE FROM checkpoints WHERE seq > 10", ()),
    )
    code, output = await asyncio.to_thread(
        verify, settings, "--bootstrap-servers", str(kafka.bootstrap_servers)
    )
    assert code == 1
    assert "first broken: ledger 10: rolled_back" in output
    assert f"the {settings.checkpoint_topic} holds a head at seq 25" in output
    code, output = await asyncio.to_thread(verify, settings, *against(settings))
    assert "not_in_ledger: 15 entries of" in output


async def test_the_witness_file_receives_every_batch_head_and_checkpoint(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str, tmp_path: Path
) -> None:
    witness = tmp_path / "witness" / "audit.jsonl"
    witness.parent.mkdir()
    settings = settings_for(kafka, state_dir, unique, witness)
    await ingest(settings, [encoded(catalog, d) for d in many(12)], 12)
    assert witness.stat().st_mode & 0o777 == 0o600
    tamper(settings.ledger_file, ("DELETE FROM entries WHERE seq > 10", ()))
    code, output = await asyncio.to_thread(verify, settings, "--witness", str(witness))
    assert code == 1
    assert "truncated" in output or "rolled_back" in output


async def test_the_checkpoint_topic_is_kept_without_time_limit(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str
) -> None:
    settings = settings_for(kafka, state_dir, unique)
    await ingest(settings, [encoded(catalog, d) for d in many(1)], 1)
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-admin"))
    await admin.start()
    try:
        described: Any = await admin.describe_configs(
            [ConfigResource(ConfigResourceType.TOPIC, settings.checkpoint_topic)]
        )
    finally:
        await admin.close()
    entries = {name: value for name, value, *_ in described[0].resources[0][4]}
    assert entries["retention.ms"] == "-1"
