"""The tests' own Kafka helpers hold on the session's broker (Apache Kafka here)."""

from __future__ import annotations

import pytest

from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import KafkaSettings
from tests.support.kafka import collect, produce

pytestmark = [pytest.mark.integration]


async def test_collect_reads_a_topic_created_and_written_just_before(
    kafka: KafkaSettings, unique: str
) -> None:
    topic = f"test.support.{unique}"
    await runtime_topics.create(kafka, {topic: 2})
    await produce(kafka, [(topic, str(i).encode(), b"v%d" % i, []) for i in range(6)])

    found = await collect(kafka, [topic], lambda r: True, expected=6, timeout=20)

    assert sorted(r.value for r in found) == [b"v%d" % i for i in range(6)]


async def test_collect_of_a_topic_that_does_not_exist_finds_nothing_quickly(
    kafka: KafkaSettings, unique: str
) -> None:
    found = await collect(kafka, [f"test.absent.{unique}"], lambda r: True, timeout=20)

    assert found == []
