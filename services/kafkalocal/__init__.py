"""A local Apache Kafka for tests and trials, with the compose stack's broker settings.

``artifacts`` fetches the pinned jars with Maven into a cache outside the repository;
``tls`` makes a CA and a broker certificate for the run; ``config`` renders
``deploy/kafka/server.properties`` with a small local overlay; ``cluster`` formats
KRaft storage (with the admin's SCRAM credential) and runs the node JVMs; ``cli`` is
``puente kafka up / down``.
"""

from services.kafkalocal.cluster import LocalKafka
from services.kafkalocal.errors import (
    ArtifactsError,
    BrokerStartError,
    JavaMissingError,
    LocalKafkaError,
)

__all__ = [
    "ArtifactsError",
    "BrokerStartError",
    "JavaMissingError",
    "LocalKafka",
    "LocalKafkaError",
]
