"""Reading and writing real topics in integration tests (on either broker)."""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Iterable
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contracts import topics as hub_topics
from services.runtime import rebuild, topic_admin
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import KafkaSettings

# Seconds partitions_of() waits for a topic missing from the metadata (one created
# just before may not be listed yet on every broker).
TOPIC_PATIENCE = 2.0


def kafka_env(kafka: KafkaSettings) -> dict[str, str]:
    """``PUENTE_KAFKA_*`` variables that point a child process at ``kafka``.

    Only what is set: on the embedded broker that is the bootstrap list alone, on
    Apache Kafka the SASL principal (and the CA of a TLS listener) as well.
    """
    env = {"PUENTE_KAFKA_BOOTSTRAP_SERVERS": str(kafka.bootstrap_servers)}
    env["PUENTE_KAFKA_SECURITY_PROTOCOL"] = kafka.security_protocol
    if kafka.sasl_mechanism:
        env["PUENTE_KAFKA_SASL_MECHANISM"] = kafka.sasl_mechanism
    if kafka.sasl_username:
        env["PUENTE_KAFKA_SASL_USERNAME"] = kafka.sasl_username
    if kafka.sasl_password:
        env["PUENTE_KAFKA_SASL_PASSWORD"] = kafka.sasl_password.get_secret_value()
    if kafka.ssl_cafile:
        env["PUENTE_KAFKA_SSL_CAFILE"] = str(kafka.ssl_cafile)
    return env


def header(record: Any, name: str) -> str | None:
    """The value of header ``name`` of a consumer record, decoded."""
    for key, value in record.headers:
        if key == name:
            return (value or b"").decode()
    return None


async def produce(
    kafka: KafkaSettings,
    records: Iterable[tuple[str, bytes | None, bytes, list[tuple[str, bytes]]]],
) -> list[tuple[str, int, int]]:
    """Produce (topic, key, value, headers) records; return their positions."""
    producer = AIOKafkaProducer(**producer_config(kafka, "test-producer"))
    await producer.start()
    try:
        futures = [
            await producer.send(topic, value, key=key, headers=headers)
            for topic, key, value, headers in records
        ]
        done = await asyncio.gather(*futures)
        return [(m.topic, m.partition, m.offset) for m in done]
    finally:
        await producer.stop()


async def collect(
    kafka: KafkaSettings,
    topics: Iterable[str],
    keep: Callable[[Any], bool],
    *,
    expected: int | None = None,
    timeout: float = 30.0,
    settle: float = 1.0,
) -> list[Any]:
    """Records of ``topics`` (from the beginning) that ``keep`` accepts.

    Stops when ``expected`` records were found (then waits ``settle`` seconds more to
    catch extras), or at ``timeout``.
    """
    partitions = await partitions_of(kafka, topics)
    found: list[Any] = []
    if not partitions:
        return found
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-collector"))
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=200)
            found.extend(r for rs in batch.values() for r in rs if keep(r))
            if expected is not None and len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
        return found
    finally:
        await consumer.stop()


async def partitions_of(
    kafka: KafkaSettings, topics: Iterable[str]
) -> list[TopicPartition]:
    """Every partition of those ``topics`` that exist, asked of the broker itself.

    A consumer's cached metadata does not know a topic created after it started (and
    on Apache Kafka not even one created before: its first metadata request names no
    topic), so the partitions come from an admin client's fresh metadata request.
    Topics are described only once listed (`runtime.rebuild.partitions`): describing
    an unknown topic could create it on a broker that auto-creates topics.
    """
    wanted = list(dict.fromkeys(topics))
    deadline = time.monotonic() + TOPIC_PATIENCE
    while True:
        found = await rebuild.partitions(kafka, wanted, "test-collector-admin")
        if {tp.topic for tp in found} >= set(wanted) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(0.2)


async def create_inbound(kafka: KafkaSettings, wanted: dict[str, int]) -> None:
    """Create the ``hub.in.<source>.<type>`` topics of ``wanted`` (name -> partitions)
    and each source's ``hub.rejected.<source>``.

    Every router of the session reads every hub.in topic and answers a record it
    refuses on the source's rejected topic. Apache Kafka creates no topic on its own,
    and a router with nowhere to write a refusal creates the topic (as admin) or holds
    that partition, so a test that makes an inbound topic for a source the policy
    does not know makes both, and no router waits.
    """
    sources = {name.split(".")[2] for name in wanted}
    await topic_admin.create(
        kafka, {**wanted, **{hub_topics.rejected(s): 1 for s in sorted(sources)}}
    )
