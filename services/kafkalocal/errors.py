"""Errors of the local Apache Kafka: each says in one line what to do."""

from __future__ import annotations

from services.contracts.errors import PuenteError


class LocalKafkaError(PuenteError):
    """The local Apache Kafka could not be prepared, started or stopped."""


class JavaMissingError(LocalKafkaError):
    """No usable JDK (17 or newer) on this machine."""


class ArtifactsError(LocalKafkaError):
    """Maven could not resolve the pinned Kafka artifacts (missing, offline, refused)."""


class BrokerStartError(LocalKafkaError):
    """A broker JVM exited or did not become ready in time."""
