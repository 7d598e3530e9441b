"""aiokafka client configuration that holds on the embedded broker and on Kafka.

Rules from shared/reference/embedded-broker.md: earliest offsets, acks=all, no
idempotence or transactions, manual commits, short fetch waits.
"""

from __future__ import annotations

import random
import ssl
import zlib
from collections.abc import Sequence
from typing import Any

from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from services.contracts.errors import ConfigurationError
from services.runtime.settings import KafkaSettings


def bootstrap(settings: KafkaSettings) -> str:
    """The bootstrap servers; fails loudly if the embedded broker was not started."""
    if not settings.bootstrap_servers:
        raise ConfigurationError(
            "PUENTE_KAFKA_BOOTSTRAP_SERVERS is not set and no embedded broker was started"
        )
    return settings.bootstrap_servers


def security(settings: KafkaSettings) -> dict[str, Any]:
    """SASL/TLS keyword arguments for any aiokafka client."""
    options: dict[str, Any] = {"security_protocol": settings.security_protocol}
    if settings.security_protocol in ("SSL", "SASL_SSL"):
        context = ssl.create_default_context(
            cafile=str(settings.ssl_cafile) if settings.ssl_cafile else None
        )
        if settings.ssl_certfile:
            context.load_cert_chain(
                str(settings.ssl_certfile),
                str(settings.ssl_keyfile) if settings.ssl_keyfile else None,
            )
        options["ssl_context"] = context
    if settings.security_protocol.startswith("SASL"):
        options["sasl_mechanism"] = settings.sasl_mechanism or "SCRAM-SHA-512"
        options["sasl_plain_username"] = settings.sasl_username
        options["sasl_plain_password"] = (
            settings.sasl_password.get_secret_value() if settings.sasl_password else None
        )
    return options


def crc32_partitioner(
    key: bytes | None, all_partitions: Sequence[int], available: Sequence[int]
) -> int:
    """Key -> partition with zlib's C crc32 instead of aiokafka's pure-Python murmur2.

    The hub's producers send several records per event, and murmur2 in Python cost
    more than encoding them. Only the hub writes its topics, so no other client's
    key -> partition mapping has to match.
    """
    if key is None:
        return random.choice(available or all_partitions)  # noqa: S311 - not crypto
    return all_partitions[zlib.crc32(key) % len(all_partitions)]


def producer_config(
    settings: KafkaSettings, client_id: str, **tuning: Any
) -> dict[str, Any]:
    """AIOKafkaProducer keyword arguments (acks=all: acks=0 breaks the embedded one).

    ``tuning`` overrides batching options (``linger_ms``, ``max_batch_size``) for
    producers that build their own record batches.
    """
    return {
        "bootstrap_servers": bootstrap(settings),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.max_request_size,
        "request_timeout_ms": settings.request_timeout_ms,
        "partitioner": crc32_partitioner,
        **security(settings),
        **tuning,
    }


def consumer_config(
    settings: KafkaSettings, group_id: str | None, client_id: str
) -> dict[str, Any]:
    """AIOKafkaConsumer keyword arguments: earliest, manual commit, short fetch wait."""
    return {
        "bootstrap_servers": bootstrap(settings),
        "client_id": client_id,
        "group_id": group_id,
        "auto_offset_reset": "earliest",
        # Deliveries of aborted router transactions are never read (the embedded
        # broker, without transactions, serves every record either way).
        "isolation_level": "read_committed",
        "enable_auto_commit": False,
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "request_timeout_ms": max(
            settings.request_timeout_ms, settings.session_timeout_ms + 5000
        ),
        "max_partition_fetch_bytes": max(settings.max_request_size, 1_048_576),
        **security(settings),
    }


def admin_config(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """AIOKafkaAdminClient keyword arguments."""
    return {
        "bootstrap_servers": bootstrap(settings),
        "client_id": client_id,
        "request_timeout_ms": settings.request_timeout_ms,
        **security(settings),
    }


def faststream_security(settings: KafkaSettings) -> BaseSecurity | None:
    """The same SASL/TLS settings in FastStream's terms (for ``KafkaBroker``)."""
    options = security(settings)
    context = options.get("ssl_context")
    if not settings.security_protocol.startswith("SASL"):
        return BaseSecurity(ssl_context=context, use_ssl=True) if context else None
    user = options["sasl_plain_username"] or ""
    password = options["sasl_plain_password"] or ""
    kinds: dict[str, type[SASLPlaintext | SASLScram256 | SASLScram512]] = {
        "PLAIN": SASLPlaintext,
        "SCRAM-SHA-256": SASLScram256,
        "SCRAM-SHA-512": SASLScram512,
    }
    kind = kinds[options["sasl_mechanism"]]
    return kind(user, password, ssl_context=context, use_ssl=context is not None)


def broker_options(settings: KafkaSettings, client_id: str) -> dict[str, Any]:
    """``faststream.kafka.KafkaBroker`` keyword arguments matching `producer_config`."""
    return {
        "bootstrap_servers": bootstrap(settings),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": False,
        "allow_auto_create_topics": False,
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.max_request_size,
        "request_timeout_ms": settings.request_timeout_ms,
        # New hub.in.<institution> topics are picked up by the pattern within 10 s.
        "metadata_max_age_ms": 10_000,
        "security": faststream_security(settings),
    }


def subscriber_options(settings: KafkaSettings, **tuning: Any) -> dict[str, Any]:
    """Subscriber keyword arguments: earliest offsets, short fetch wait, quick joins.

    ``tuning`` overrides options for one subscriber (e.g. its ``fetch_max_wait_ms``).
    """
    return {
        "auto_offset_reset": "earliest",
        "session_timeout_ms": settings.session_timeout_ms,
        "heartbeat_interval_ms": settings.heartbeat_interval_ms,
        "fetch_max_wait_ms": settings.fetch_max_wait_ms,
        "max_partition_fetch_bytes": max(settings.max_request_size, 1_048_576),
        **tuning,
    }
