"""These tests run on Apache Kafka: the session's node, as the admin super-user.

``kafka`` and ``session_kafka`` are the admin's settings on the one ``apache_kafka``
node of the session (registered in ``tests/conftest.py``); a test about the embedded
broker itself takes ``embedded_broker`` instead.
"""

from tests.support.apache_kafka import apache_session_kafka

__all__ = ["apache_session_kafka"]
