"""Security tests run against Apache Kafka itself (one broker for the session)."""

from tests.security.hub import hub
from tests.support.apache_kafka import apache_kafka

__all__ = ["apache_kafka", "hub"]
