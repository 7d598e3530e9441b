"""These tests run on Apache Kafka: one broker for the session, as the admin user.

``kafka`` and ``session_kafka`` are the admin super-user's settings on it; a test
about the embedded broker itself takes ``embedded_broker`` instead.
"""

from tests.support.apache_kafka import apache_kafka, apache_session_kafka

__all__ = ["apache_kafka", "apache_session_kafka"]
