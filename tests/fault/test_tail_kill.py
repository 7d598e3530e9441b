"""``puente tail --follow`` when its Apache Kafka node is killed and started again.

The node keeps its data across the restart, so the command must go on where it
stopped: every record once, in order, after one line saying it waits for the broker
and one saying the broker answers again, and none of aiokafka's own log.
"""

from __future__ import annotations

import asyncio

import pytest

from services.contracts.catalog import Catalog
from services.kafkalocal import LocalKafka
from services.runtime import pubsub, topic_admin
from services.runtime.kafka import bootstrap
from tests.support.tail import TOPIC, Running, assert_quiet, event_ids, prepared

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(300)]


async def test_a_followed_tail_goes_on_where_it_stopped_when_its_node_comes_back(
    own_node: LocalKafka, catalog: Catalog
) -> None:
    kafka = own_node.settings()
    await topic_admin.create(kafka, {TOPIC: 1})
    before = prepared(catalog, 3)
    await pubsub.send_all(kafka, before)
    where = f"the broker at {bootstrap(kafka)}"

    tail = Running(kafka, "--follow", "--from-beginning")
    try:
        tail.until("the records were not printed", lambda: len(tail.out) == 3)
        own_node.kill(0)
        lost = tail.until("no line said the broker is gone", lambda: bool(tail.err))
        await asyncio.to_thread(own_node.restart, 0)
        back = tail.until("no line said the broker is back", lambda: len(tail.err) > 1)
        after = prepared(catalog, 1)
        await pubsub.send_all(kafka, after)
        tail.until(
            "the record sent after the restart was not printed", lambda: len(tail.out) > 3
        )
    finally:
        tail.stop()

    print(f"\nsaid {lost:.1f} s after the kill, then {back:.1f} s after: {tail.err}")
    assert_quiet(tail.err)
    assert tail.err == [
        f"{where} does not answer; waiting for it",
        f"{where} answers again; following {TOPIC}",
    ]
    assert event_ids(tail.out) == [e.event_id for e in [*before, *after]]
