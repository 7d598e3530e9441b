"""Shared fixtures: one broker of each kind per session, fresh names per test.

``session_kafka`` is the session's broker as client settings: the embedded broker
here; ``tests/integration`` and ``tests/fault`` override it with Apache Kafka's admin
super-user (``tests/support/apache_kafka.py``), so the same tests, taking ``kafka``
or ``session_kafka``, run on the production broker. ``apache_kafka`` is registered
here, once: a directory that imported it again would start a second node.
"""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.runtime.embedded import EmbeddedBroker
from services.runtime.settings import REPO_ROOT, KafkaSettings
from tests.support.apache_kafka import apache_kafka

__all__ = ["apache_kafka"]


@pytest.fixture(scope="session")
def catalog() -> Catalog:
    """The repository's schema catalog, parsed once."""
    return Catalog.load(REPO_ROOT / "schemas")


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One real Kafka-protocol broker (Tansu) on a free loopback port."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture(scope="session")
def session_kafka(embedded_broker: EmbeddedBroker) -> KafkaSettings:
    """Client settings of the session's broker (module fixtures take this one)."""
    return KafkaSettings(bootstrap_servers=embedded_broker.bootstrap_servers)


@pytest.fixture
def kafka(session_kafka: KafkaSettings) -> KafkaSettings:
    """Client settings of the session's broker, for one test."""
    return session_kafka


@pytest.fixture
def unique() -> str:
    """A short suffix that makes topic and group names private to one test."""
    return uuid.uuid4().hex[:10]


@pytest.fixture
def registry() -> CollectorRegistry:
    """A metrics registry of the test's own."""
    return CollectorRegistry()


@pytest.fixture
def state_dir(tmp_path: Path) -> Path:
    """A private PUENTE_STATE_DIR."""
    path = tmp_path / "state"
    path.mkdir()
    return path
