"""These tests run on Apache Kafka: the session's node, as the admin super-user.

``kafka`` and ``session_kafka`` are the admin's settings on the one ``apache_kafka``
node of the session (registered in ``tests/conftest.py``); a test about the embedded
broker itself takes ``embedded_broker`` instead.
"""

from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from services.kafkalocal import LocalKafka
from services.runtime.embedded import EmbeddedBroker
from tests.support.apache_kafka import apache_session_kafka
from tests.support.own_brokers import apache_node_of_its_own, embedded_broker_of_its_own

__all__ = ["apache_session_kafka"]


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """An embedded broker of this test's own: the test kills it."""
    yield from embedded_broker_of_its_own()


@pytest.fixture
async def own_node(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    """One Apache Kafka node of this test's own: the test kills it."""
    async for node in apache_node_of_its_own(tmp_path):
        yield node
