"""``puente publish`` when its Apache Kafka node is killed mid-publish.

Apache Kafka grants producer ids, so the command's producer is idempotent there, and
an idempotent producer never gives an event up: it would wait for the node as long
as the node is away. The command must end within its ``--timeout`` anyway, exit 3,
and say in one line how many events were acknowledged and that publishing again is
safe.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.kafkalocal import LocalKafka
from services.runtime import topic_admin
from services.runtime.kafka import producer_config
from tests.support.publish import incomplete, publish_and_kill

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]

TOPIC = "hub.in.dgme.return_arrival"
# Enough that the node dies with most of them in the air (see the smoke test).
EVENTS = 40_000
TIMEOUT_S = 5
# Process teardown after the bound, on a machine shared by several test runs.
MARGIN_S = 15


async def test_an_idempotent_publish_ends_within_its_timeout_when_its_node_is_killed(
    own_node: LocalKafka, catalog: Catalog, tmp_path: Path
) -> None:
    kafka = own_node.settings()
    assert producer_config(kafka, "check")["enable_idempotence"] is True
    await topic_admin.create(kafka, {TOPIC: 1})
    entry = catalog.get("return_arrival")
    path = tmp_path / "events.json"
    path.write_text(json.dumps([minimal_event(entry, "dgme") for _ in range(EVENTS)]))

    ended = await publish_and_kill(
        kafka,
        path,
        TOPIC,
        lambda: own_node.kill(0),
        "--timeout",
        str(TIMEOUT_S),
        wait_s=TIMEOUT_S + MARGIN_S,
    )
    said = incomplete(ended.process, ended.stdout, ended.stderr)
    print(f"\npublish ended {ended.took:.1f} s after the node was killed: {said.message}")
    assert said.total == EVENTS
    assert said.acknowledged < EVENTS, "every event was acknowledged before the kill"
    assert f"no acknowledgement within {TIMEOUT_S} s" in said.message
