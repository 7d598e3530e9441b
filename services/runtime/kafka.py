"""aiokafka client configuration that holds on the embedded broker and on Kafka.

Rules from the embedded broker's limits: earliest offsets, acks=all, manual commits,
short fetch waits. Producers are idempotent where the broker grants producer ids
(``PUENTE_KAFKA_IDEMPOTENCE``): Apache Kafka does, the embedded broker does not.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import contextvars
import logging
import random
import ssl
import zlib
from collections.abc import Iterator, Sequence
from typing import Any, Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError, KafkaError
from faststream.security import (
    BaseSecurity,
    SASLPlaintext,
    SASLScram256,
    SASLScram512,
)

from services.contracts.errors import ConfigurationError
from services.runtime.settings import KafkaSettings

log = logging.getLogger(__name__)

# How long the capability probe may take: a bootstrap and one InitProducerId request.
PROBE_TIMEOUT_S: Final = 5.0
# The broker's answer per (bootstrap servers, protocol, principal): granted or not.
_granted: dict[tuple[str, str, str | None], bool] = {}


class _Question:
    """One open question for a producer id; closed when its block ends."""

    def __init__(self) -> None:
        self.open = True


# Set inside the asking task: aiokafka logs a refused producer id as an error, and
# for the asker a refusal is an answer, not a fault. An object, not a flag: tasks
# started inside the block (a producer's sender task) copy the context and outlive
# the block, and must log again once the question is closed.
_asking: contextvars.ContextVar[_Question | None] = contextvars.ContextVar(
    "puente_kafka_asking", default=None
)


class _QuietQuestion(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        question = _asking.get()
        return question is None or not question.open


logging.getLogger("aiokafka.producer.sender").addFilter(_QuietQuestion())


@contextlib.contextmanager
def asking_for_producer_id() -> Iterator[None]:
    """Around a producer's start that asks the broker whether it grants producer ids.

    aiokafka logs a refusal as an error; inside this block (this task, and tasks it
    starts, until the block ends) it is not logged, because the caller treats the
    refusal as the broker's answer.
    """
    question = _Question()
    token = _asking.set(question)
    try:
        yield
    finally:
        question.open = False
        _asking.reset(token)


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
    """AIOKafkaProducer keyword arguments: acks=all, idempotent where granted.

    acks=all because acks=0 breaks the embedded broker, and because a record
    acknowledged by every in-sync replica survives the loss of its leader.
    ``tuning`` overrides batching options (``linger_ms``, ``max_batch_size``) for
    producers that build their own record batches.
    """
    return {
        "bootstrap_servers": bootstrap(settings),
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": idempotent(settings),
        "linger_ms": settings.linger_ms,
        "max_request_size": settings.max_request_size,
        "request_timeout_ms": settings.request_timeout_ms,
        "partitioner": crc32_partitioner,
        **security(settings),
        **tuning,
    }


def idempotent(settings: KafkaSettings) -> bool:
    """Whether producers for ``settings`` ask for idempotence (``enable_idempotence``).

    ``on`` and ``off`` say so; ``auto`` is the broker's answer to `probe_idempotence`,
    asked here (blocking, once per process and principal) if no one asked yet. An
    unreachable broker means no for this producer, and is asked again next time.
    """
    if settings.idempotence != "auto":
        return settings.idempotence == "on"
    known = _granted.get(_principal(settings))
    if known is not None:
        return known
    # A thread of its own: the caller may be inside an event loop (a service's start).
    with concurrent.futures.ThreadPoolExecutor(1, "puente-kafka-probe") as pool:
        return pool.submit(asyncio.run, probe_idempotence(settings)).result()


async def probe_idempotence(settings: KafkaSettings) -> bool:
    """Whether the broker grants producer ids to this principal (asked once, cached).

    The question is the one an idempotent producer asks at its start
    (InitProducerId): Apache Kafka grants an id to a principal that may write, the
    embedded broker answers with an error. ``on`` and ``off`` are not probed.
    """
    if settings.idempotence != "auto":
        return settings.idempotence == "on"
    key = _principal(settings)
    if key in _granted:
        return _granted[key]
    answer = await _ask_for_producer_id(settings)
    if answer is None:
        return False
    _granted[key] = answer
    log.info(
        "producers are %s: the broker %s producer ids",
        "idempotent" if answer else "at-least-once (not idempotent)",
        "grants" if answer else "grants no",
    )
    return answer


async def _ask_for_producer_id(settings: KafkaSettings) -> bool | None:
    """True or False as the broker answers; None if it could not be asked."""
    asking = settings.model_copy(update={"idempotence": "on"})
    producer = AIOKafkaProducer(**producer_config(asking, "puente-probe"))
    try:
        with asking_for_producer_id():
            async with asyncio.timeout(PROBE_TIMEOUT_S):
                await producer.start()
    except (KafkaConnectionError, OSError, TimeoutError) as e:
        log.info("the broker could not be asked for a producer id (%s)", type(e).__name__)
        return None
    except KafkaError as e:
        log.debug("the broker grants no producer id: %s", type(e).__name__)
        return False
    finally:
        await producer.stop()
    return True


def _principal(settings: KafkaSettings) -> tuple[str, str, str | None]:
    return (bootstrap(settings), settings.security_protocol, settings.sasl_username)


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
        # A list: FastStream hands a string to aiokafka as one host, so a list of
        # several brokers ("a:9092,b:9092") would not connect.
        "bootstrap_servers": [s.strip() for s in bootstrap(settings).split(",")],
        "client_id": client_id,
        "acks": "all",
        "enable_idempotence": idempotent(settings),
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
