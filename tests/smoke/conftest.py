"""Fixtures of the smoke tests (the embedded broker)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from services.runtime.embedded import EmbeddedBroker
from tests.support.own_brokers import embedded_broker_of_its_own


@pytest.fixture
def own_broker() -> Iterator[EmbeddedBroker]:
    """A broker of this test's own: the test kills it."""
    yield from embedded_broker_of_its_own()
