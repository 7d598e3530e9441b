"""``puente publish`` when the embedded broker dies mid-publish: bounded by --timeout.

A real ``puente`` process publishes to a broker of the test's own, which is killed
(SIGKILL) once the first records are stored. The command must end on its own within
its ``--timeout`` (plus the time a Python process takes to stop on a loaded
machine), exit 3, and say in one line how many events the broker acknowledged and
that publishing again is safe.
"""

from __future__ import annotations

import asyncio
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.runtime import topic_admin
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import KafkaSettings
from tests.support.publish import incomplete, publish_and_kill, start_publish

pytestmark = [pytest.mark.smoke, pytest.mark.slow, pytest.mark.timeout(240)]

TOPIC = "hub.in.dgme.return_arrival"
# Enough that the broker dies with most of them still in the air: the command
# validates them for a few seconds, then sends for a second or more.
EVENTS = 40_000
TIMEOUT_S = 5
# Process teardown after the bound, on a machine shared by several test runs.
MARGIN_S = 15


async def test_publish_ends_within_its_timeout_when_the_broker_dies_mid_publish(
    own_broker: EmbeddedBroker, catalog: Catalog, tmp_path: Path
) -> None:
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    await topic_admin.create(kafka, {TOPIC: 1})
    entry = catalog.get("return_arrival")
    path = tmp_path / "events.json"
    path.write_text(json.dumps([minimal_event(entry, "dgme") for _ in range(EVENTS)]))

    ended = await publish_and_kill(
        kafka,
        path,
        TOPIC,
        own_broker.stop,
        "--timeout",
        str(TIMEOUT_S),
        wait_s=TIMEOUT_S + MARGIN_S,
    )
    said = incomplete(ended.process, ended.stdout, ended.stderr)
    print(
        f"\npublish ended {ended.took:.1f} s after the broker was killed: {said.message}"
    )
    assert said.total == EVENTS
    assert said.acknowledged < EVENTS, "every event was acknowledged before the kill"
    assert f"no acknowledgement within {TIMEOUT_S} s" in said.message


async def test_publish_to_a_broker_that_is_gone_says_nothing_was_published(
    catalog: Catalog, tmp_path: Path
) -> None:
    # Nothing listens on the port of a broker stopped a moment ago.
    broker = EmbeddedBroker().start()
    kafka = KafkaSettings(bootstrap_servers=broker.bootstrap_servers)
    broker.stop()
    path = tmp_path / "event.json"
    path.write_text(json.dumps(minimal_event(catalog.get("return_arrival"), "dgme")))

    with start_publish(kafka, path, "dgme", "--timeout", str(TIMEOUT_S)) as process:
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=60)

    assert process.returncode == 1, stderr
    assert "Traceback" not in stderr
    assert stderr.strip().splitlines() == [stderr.strip()]
    assert "nothing was published" in stderr
    assert stdout == ""


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


async def test_a_publish_the_broker_fails_mid_way_says_how_many_were_acknowledged(
    own_broker: EmbeddedBroker, catalog: Catalog, tmp_path: Path
) -> None:
    # The embedded broker grants no producer ids, so the producer is not idempotent:
    # it gives a batch up after the request timeout, here well before --timeout.
    kafka = KafkaSettings(
        bootstrap_servers=own_broker.bootstrap_servers, request_timeout_ms=2000
    )
    await topic_admin.create(kafka, {TOPIC: 1})
    entry = catalog.get("return_arrival")
    path = tmp_path / "events.json"
    path.write_text(json.dumps([minimal_event(entry, "dgme") for _ in range(EVENTS)]))
    env = {"PUENTE_KAFKA_REQUEST_TIMEOUT_MS": "2000"}

    ended = await publish_and_kill(
        kafka,
        path,
        TOPIC,
        own_broker.stop,
        "--timeout",
        "120",
        wait_s=2 + MARGIN_S,
        env=env,
    )
    said = incomplete(ended.process, ended.stdout, ended.stderr)
    print(
        f"\npublish ended {ended.took:.1f} s after the broker was killed: {said.message}"
    )
    assert said.total == EVENTS
    assert said.acknowledged < EVENTS, "every event was acknowledged before the kill"
    assert said.message.startswith("error: the broker failed (")


async def test_a_publish_longer_than_its_timeout_succeeds_while_the_broker_answers(
    own_broker: EmbeddedBroker, catalog: Catalog, tmp_path: Path
) -> None:
    # --timeout bounds each wait for the broker, not the whole publish.
    kafka = KafkaSettings(bootstrap_servers=own_broker.bootstrap_servers)
    await topic_admin.create(kafka, {TOPIC: 1})
    entry = catalog.get("return_arrival")
    events = [minimal_event(entry, "dgme") for _ in range(EVENTS)]
    path = tmp_path / "events.json"
    path.write_text(json.dumps(events))

    # 1.5 s: well above a pause of a loaded machine, well below the whole publish.
    with start_publish(kafka, path, "dgme", "--timeout", "1.5") as process:
        began = time.monotonic()
        stdout, stderr = await asyncio.to_thread(process.communicate, timeout=120)
        took = time.monotonic() - began

    print(f"\npublishing {EVENTS} events took {took:.1f} s with --timeout 1.5")
    assert process.returncode == 0, stderr
    assert took > 3, "the publish was too short to outlast its timeout"
    assert stdout.split() == [e["envelope"]["event_id"] for e in events]
