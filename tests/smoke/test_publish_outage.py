"""``puente publish`` when the broker dies mid-publish: bounded by ``--timeout``.

A real ``puente`` process publishes to a broker of the test's own, which is killed
(SIGKILL) once the first records are stored. The command must end on its own within
its ``--timeout`` (plus the time to start and stop a Python process on a loaded
machine), exit 3, and say in one line how many events the broker acknowledged and
that publishing again is safe.
"""

from __future__ import annotations

import asyncio
import json
import os
import re
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from aiokafka import AIOKafkaConsumer, TopicPartition

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.runtime import topic_admin
from services.runtime.embedded import EmbeddedBroker
from services.runtime.kafka import consumer_config
from services.runtime.settings import KafkaSettings
from tests.support.kafka import kafka_env

pytestmark = [pytest.mark.smoke, pytest.mark.slow, pytest.mark.timeout(240)]

TOPIC = "hub.in.dgme.return_arrival"
# Enough that the broker dies with most of them still in the air: the command
# validates them for a few seconds, then sends for a second or more.
EVENTS = 40_000
TIMEOUT_S = 5
# Process teardown after the bound, on a machine shared by several test runs.
MARGIN_S = 15
# How long the command may take before its first record reaches the broker.
FIRST_RECORD_S = 90


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: the test kills it."""
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()


def start_publish(
    kafka: KafkaSettings, path: Path, *options: str
) -> subprocess.Popen[str]:
    env = {**os.environ, **kafka_env(kafka)}
    command = ["publish", "return_arrival", str(path), "--as", "dgme", *options]
    return subprocess.Popen(
        [sys.executable, "-m", "services", *command],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


async def until_first_record(
    kafka: KafkaSettings, process: subprocess.Popen[str]
) -> None:
    """Return once the broker holds a record of ``TOPIC`` (the publish is under way)."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-outage-watch"))
    await consumer.start()
    try:
        partition = TopicPartition(TOPIC, 0)
        consumer.assign([partition])
        deadline = time.monotonic() + FIRST_RECORD_S
        while time.monotonic() < deadline:
            assert process.poll() is None, f"publish ended early: {process.returncode}"
            if await consumer.getmany(partition, timeout_ms=20, max_records=1):
                return
        pytest.fail(f"no record reached the broker within {FIRST_RECORD_S} s")
    finally:
        await consumer.stop()


async def test_publish_ends_within_its_timeout_when_the_broker_dies_mid_publish(
    own_broker: EmbeddedBroker, catalog: Catalog, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    await topic_admin.create(kafka, {TOPIC: 1})
    entry = catalog.get("return_arrival")
    path = tmp_path / "events.json"
    path.write_text(json.dumps([minimal_event(entry, "dgme") for _ in range(EVENTS)]))

    with start_publish(kafka, path, "--timeout", str(TIMEOUT_S)) as process:
        try:
            await until_first_record(kafka, process)
            own_broker.stop()
            killed = time.monotonic()
            stdout, stderr = await asyncio.to_thread(
                process.communicate, timeout=TIMEOUT_S + MARGIN_S
            )
            took = time.monotonic() - killed
        finally:
            if process.poll() is None:
                process.kill()

    print(f"\npublish ended {took:.1f} s after the broker was killed: {stderr.strip()}")
    assert process.returncode == 3, stderr
    assert "Traceback" not in stderr
    lines = stderr.strip().splitlines()
    assert len(lines) == 1, stderr
    found = re.search(r"(\d+) of (\d+) event\(s\) acknowledged", lines[0])
    assert found, lines[0]
    acknowledged, total = int(found[1]), int(found[2])
    assert total == EVENTS
    assert acknowledged < EVENTS, "every event was acknowledged before the kill"
    assert f"within {TIMEOUT_S} s" in lines[0]
    assert "may or may not be stored" in lines[0]
    assert "safe" in lines[0]
    assert "event id" in lines[0]
    # The event ids printed are those of acknowledged events only.
    assert len(stdout.split()) == acknowledged


def test_publish_help_shows_the_timeout_and_its_default() -> None:
    shown = subprocess.run(
        [sys.executable, "-m", "services", "publish", "--help"],
        capture_output=True,
        text=True,
        env={**os.environ, "COLUMNS": "200"},
        timeout=60,
        check=True,
    )
    assert "--timeout" in shown.stdout
    assert "default: 30" in shown.stdout
