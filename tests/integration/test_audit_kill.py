"""kill -9 of the audit service mid-ingestion, restart: valid chain, no gap, no double."""

from __future__ import annotations

import asyncio
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from services.audit.api import reading, verify_ledger
from services.audit.ledger import LedgerError
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys
from services.contracts.catalog import Catalog
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.support.kafka import kafka_env, produce
from tests.unit.audit.support import encoded, many

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOTAL = 3000
CHUNK = 100


def start(
    kafka: KafkaSettings, state_dir: Path, unique: str, log: Path
) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **kafka_env(kafka),
        "PUENTE_STATE_DIR": str(state_dir),
        "PUENTE_AUDIT_TOPIC": f"hub.audit.{unique}",
        "PUENTE_AUDIT_CHECKPOINT_TOPIC": f"hub.audit.checkpoints.{unique}",
        "PUENTE_AUDIT_GROUP_ID": f"audit-{unique}",
        "PUENTE_AUDIT_PORT": str(free_port()),
        # Small batches: many transactions, so the kill lands between or inside one.
        "PUENTE_AUDIT_MAX_BATCH": "20",
        "PUENTE_AUDIT_CHECKPOINT_EVERY": "250",
        "PUENTE_AUDIT_CHECKPOINT_SECONDS": "0.5",
    }
    with log.open("ab") as out:
        return subprocess.Popen(
            [sys.executable, "-m", "services.audit"],
            cwd=REPO_ROOT,
            env=env,
            stdout=out,
            stderr=out,
        )


def ledger_count(path: Path) -> int:
    if not path.exists():
        return 0
    try:
        with reading(path) as ledger:
            return ledger.count()
    except LedgerError:  # the ledger may be mid-creation
        return 0


async def until(check: Callable[[], bool], within: float, why: str) -> None:
    deadline = time.monotonic() + within
    while not check():
        assert time.monotonic() < deadline, f"timed out waiting for {why}"
        await asyncio.sleep(0.02)


async def test_a_killed_audit_service_restarts_with_no_gap_and_no_duplicate(
    kafka: KafkaSettings, catalog: Catalog, state_dir: Path, unique: str, tmp_path: Path
) -> None:
    topic = f"hub.audit.{unique}"
    await runtime_topics.create(kafka, {topic: 1})
    datums = many(TOTAL)
    values = [encoded(catalog, d) for d in datums]
    ledger = state_dir / "audit" / "ledger.sqlite"
    log = tmp_path / "audit.log"

    async def publish() -> None:
        for start_at in range(0, TOTAL, CHUNK):
            chunk = values[start_at : start_at + CHUNK]
            # Every chunk repeats a few earlier entries: the router redelivering.
            again = values[max(start_at - 5, 0) : start_at]
            await produce(kafka, [(topic, b"k", v, []) for v in [*chunk, *again]])
            await asyncio.sleep(0.05)

    publisher = asyncio.create_task(publish())
    process = start(kafka, state_dir, unique, log)
    try:
        await until(lambda: ledger_count(ledger) >= 300, 60, "the first entries")
        process.send_signal(signal.SIGKILL)
        process.wait(10)
        at_kill = ledger_count(ledger)
        assert at_kill < TOTAL, "ingestion had already finished: the kill proves nothing"
        await publisher
        process = start(kafka, state_dir, unique, log)
        await until(
            lambda: ledger_count(ledger) >= TOTAL, 90, "every entry after restart"
        )
        await asyncio.sleep(1.0)  # anything redelivered late would show up now
        process.send_signal(signal.SIGTERM)
        assert process.wait(30) == 0, log.read_text()[-2000:]
    finally:
        if process.poll() is None:
            process.kill()
        publisher.cancel()

    pinned = pinned_keys(AuditSettings(hub=HubSettings(state_dir=state_dir)))
    result = verify_ledger(ledger, pinned)
    assert result.ok, result.problems
    assert result.entries == TOTAL
    assert result.last_checkpoint_seq == TOTAL  # a clean stop signs the tail
    with reading(ledger) as opened:
        rows = list(opened.rows())
    assert [r.seq for r in rows] == list(range(1, TOTAL + 1))
    assert sorted(r.audit_id for r in rows) == sorted(str(d["audit_id"]) for d in datums)
