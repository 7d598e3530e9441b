"""A hub key rotation through a real router and ledger: a person is found across it.

The router routes a child's arrival under hub key version 1, is stopped, the key is
rotated, and a second router (same group, so no replay) routes her next arrival
under version 2. ``puente subject-key`` then prints both keys, and the ledger's
subject report under each finds exactly the arrival of its version.
"""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from pathlib import Path
from typing import Any

import pytest
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.audit import queries, querylog
from services.audit.api import reading
from services.audit.app import build_service as build_audit
from services.audit.ledger import Ledger
from services.audit.settings import AuditSettings
from services.cli import app
from services.router.app import build_service as build_router
from services.router.settings import RouterSettings
from services.runtime import environment, pubsub
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, rotate
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings

pytestmark = pytest.mark.integration
INGEST_TIMEOUT = 60.0


def _arrival(document: str) -> Any:
    event = json.loads((REPO_ROOT / "examples" / "return_arrival.json").read_text())
    event["envelope"]["event_id"] = str(uuid.uuid4())
    event["payload"]["person_identity"]["documents"] = [
        {"document_type": "NUI", "document_number": document, "issuing_country": "SV"}
    ]
    return event


def _reported_events(ledger: Path, subject_key: str) -> set[str]:
    if not ledger.is_file():
        return set()
    with reading(ledger) as opened:
        report = queries.subject_report(opened, subject_key)
    return {d.event_id for d in report.disclosures}


async def _route(
    kafka: KafkaSettings, router_settings: RouterSettings, event: Any
) -> None:
    router = build_router(router_settings, CollectorRegistry())
    await router.start()
    try:
        await pubsub.send_all(
            kafka, [pubsub.prepare(router.catalog, "return_arrival", "dgme", event)]
        )
        # Stopped only once the ledger holds the event: its offset is committed.
        ledger = AuditSettings(hub=router_settings.hub).ledger_file
        deadline = time.monotonic() + INGEST_TIMEOUT
        while not _in_ledger(ledger, event["envelope"]["event_id"]):
            assert time.monotonic() < deadline, "the arrival never reached the ledger"
            await asyncio.sleep(0.2)
    finally:
        await router.stop()


def _in_ledger(ledger: Path, event_id: str) -> bool:
    if not ledger.is_file():
        return False
    with reading(ledger) as opened:
        return bool(queries.who_received(opened, event_id).decisions)


async def test_a_subject_report_finds_a_person_under_every_hub_key_version(
    session_kafka: KafkaSettings,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    for name in (
        "PUENTE_ENV",
        "PUENTE_HUB_KEY",
        "PUENTE_HUB_KEYS",
        "PUENTE_HUB_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.delenv("PUENTE_AUDIT_LEDGER_PATH", raising=False)
    monkeypatch.setenv("PUENTE_STATE_DIR", str(tmp_path))
    monkeypatch.setattr(environment, "_announced", set())
    suffix = uuid.uuid4().hex[:8]
    state = HubSettings(state_dir=tmp_path)
    kafka = session_kafka
    router_settings = RouterSettings(
        group_id=f"router-keys-{suffix}", port=free_port(), hub=state, kafka=kafka
    )
    audit = build_audit(
        AuditSettings(
            port=free_port(),
            group_id=f"audit-keys-{suffix}",
            checkpoint_topic=f"hub.audit.checkpoints.{suffix}",
            hub=state,
            kafka=kafka,
        ),
        CollectorRegistry(),
    )
    document = f"{uuid.uuid4().int % 10**8:08d}-3"
    before, after = _arrival(document), _arrival(document)
    await audit.start()
    try:
        await _route(kafka, router_settings, before)
        assert rotate(HubKeySettings(hub=state)).version == 2
        await _route(kafka, router_settings, after)
    finally:
        await audit.stop()

    done = CliRunner().invoke(
        app,
        ["subject-key", "--operator-attests-oversight", "--document", f"NUI:{document}"],
    )
    assert done.exit_code == 0, done.stderr
    k2, k1 = (line.split()[0] for line in done.stdout.splitlines())
    assert (k2[:3], k1[:3]) == ("k2:", "k1:")
    ledger = audit.settings.ledger_file
    assert _reported_events(ledger, k1) == {before["envelope"]["event_id"]}
    assert _reported_events(ledger, k2) == {after["envelope"]["event_id"]}
    reader = Ledger.open_reader(ledger)
    try:
        logged = querylog.read(reader)
    finally:
        reader.close()
    assert [(q.role, q.query, q.query_key) for q in logged] == [
        ("operator", "subject-key", k2)
    ]
