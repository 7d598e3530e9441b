"""The relay's read-back finds acknowledged records by offset on a real broker."""

from __future__ import annotations

import pytest

from services.gateway.readback import ReadBack
from services.runtime.settings import KafkaSettings
from tests.support.kafka import create_inbound, produce

pytestmark = pytest.mark.integration


async def test_read_back_names_the_event_at_each_offset_and_none_past_the_end(
    kafka: KafkaSettings, unique: str
) -> None:
    topic = f"hub.in.readback_{unique}.return_arrival"
    await create_inbound(kafka, {topic: 2})
    written = await produce(
        kafka,
        [(topic, b"k", b"v", [("ce_id", f"e{i}".encode())]) for i in range(3)],
    )
    (partition,) = {p for _, p, _ in written}  # one key: one partition
    reader = ReadBack(kafka)
    try:
        for index, (_, _, offset) in enumerate(written):
            found = await reader.ids_at({(topic, partition): offset})
            assert found == {(topic, partition): f"e{index}"}
        assert await reader.ids_at({(topic, partition): 99}) == {(topic, partition): None}
    finally:
        await reader.close()
