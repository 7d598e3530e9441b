"""One Apache Kafka broker per test session, started as `puente kafka up` starts it.

The broker runs the pinned Apache Kafka (``deploy/kafka/pom.xml``, fetched with Maven
on first use) with the compose stack's settings file: SASL/SCRAM, the standard
authorizer, deny by default, no topic auto-creation, and a TLS listener whose CA is
``apache_kafka.tls_files.ca``. Tests get a `LocalKafka`: ``settings()`` and
``tls_settings()`` give client settings for the admin super-user or any SCRAM user.

``tests/conftest.py`` registers the fixture once for the whole session (a conftest
that imported it again would start a node of its own). A directory runs every test
that takes ``kafka`` or ``session_kafka`` on it, as the admin super-user, by importing
``apache_session_kafka`` into its ``conftest.py``.

A missing JDK, Maven or artifact repository fails the tests that need the broker with
one line saying so: nothing is skipped.
"""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from services.kafkalocal import LocalKafka, LocalKafkaError
from services.runtime.settings import KafkaSettings

# Seconds the last session's broker took to start (jar resolution included).
STARTUP: dict[str, float] = {}


@pytest.fixture(scope="session")
def apache_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """A single Apache Kafka node on free loopback ports, stopped after the session."""
    began = time.monotonic()
    kafka = LocalKafka(tmp_path_factory.mktemp("apache-kafka"), port_base=0, heap="512m")
    try:
        kafka.start()
    except LocalKafkaError as e:
        pytest.fail(f"Apache Kafka could not be started: {e}", pytrace=False)
    STARTUP["seconds"] = time.monotonic() - began
    try:
        yield kafka
    finally:
        kafka.stop()


@pytest.fixture(scope="session", name="session_kafka")
def apache_session_kafka(apache_kafka: LocalKafka) -> KafkaSettings:
    """``session_kafka`` on Apache Kafka: its admin super-user, for tests whose
    subject is not principals. A directory's ``conftest.py`` that imports this
    fixture runs its ``kafka`` and ``session_kafka`` tests on Apache Kafka."""
    return apache_kafka.settings()
