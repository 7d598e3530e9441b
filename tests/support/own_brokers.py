"""Brokers a test keeps to itself because it kills them (conftest fixtures use these)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

from services.kafkalocal import LocalKafka
from services.runtime.embedded import EmbeddedBroker


def embedded_broker_of_its_own() -> Iterator[EmbeddedBroker]:
    """An embedded broker, stopped at the end (if the test left it running)."""
    broker = EmbeddedBroker().start()
    yield broker
    broker.stop()


async def apache_node_of_its_own(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    """One Apache Kafka node (small heap), stopped at the end."""
    node = LocalKafka(tmp_path / "kafka", brokers=1, port_base=0, heap="384m")
    await asyncio.to_thread(node.start)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.stop)
