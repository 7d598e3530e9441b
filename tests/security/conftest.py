"""Security tests run against Apache Kafka itself (one broker for the session).

Its ``apache_kafka`` fixture is registered once, in ``tests/conftest.py``.
"""

from tests.security.hub import hub

__all__ = ["hub"]
