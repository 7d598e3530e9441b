"""Producer options: acks=all always, idempotence as the setting or the broker says."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError
from faststream.kafka import KafkaBroker

from services.runtime import kafka as kafka_module
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.kafka import (
    PROBE_TIMEOUT_S,
    asking_for_producer_id,
    broker_options,
    idempotent,
    probe_idempotence,
    producer_config,
)
from services.runtime.settings import KafkaSettings


def settings(idempotence: str, bootstrap: str = "127.0.0.1:9") -> KafkaSettings:
    return KafkaSettings.model_validate(
        {"bootstrap_servers": bootstrap, "idempotence": idempotence}
    )


def test_producers_are_idempotent_with_acks_all_when_idempotence_is_on() -> None:
    kafka = settings("on")
    for options in (producer_config(kafka, "p"), broker_options(kafka, "b")):
        assert options["enable_idempotence"] is True
        assert options["acks"] == "all"


def test_producers_are_plain_with_acks_all_when_idempotence_is_off() -> None:
    kafka = settings("off")
    for options in (producer_config(kafka, "p"), broker_options(kafka, "b")):
        assert options["enable_idempotence"] is False
        assert options["acks"] == "all"


def test_idempotence_is_auto_unless_configured(monkeypatch: pytest.MonkeyPatch) -> None:
    assert KafkaSettings().idempotence == "auto"
    monkeypatch.setenv("PUENTE_KAFKA_IDEMPOTENCE", "off")
    assert KafkaSettings().idempotence == "off"


async def test_an_unreachable_broker_means_plain_producers_without_waiting() -> None:
    kafka = settings("auto", f"127.0.0.1:{free_port()}")
    began = time.monotonic()
    assert await probe_idempotence(kafka) is False
    assert idempotent(kafka) is False  # asked again (nothing was cached), same answer
    assert time.monotonic() - began < 2 * PROBE_TIMEOUT_S


async def test_the_embedded_broker_grants_no_producer_id_so_auto_producers_stay_plain(
    embedded_broker: EmbeddedBroker,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The answer is kept per process: earlier tests on the session's broker asked.
    monkeypatch.setattr(kafka_module, "_granted", {})
    kafka = settings("auto", embedded_broker.bootstrap_servers)
    with caplog.at_level(logging.INFO):
        options = producer_config(kafka, "test-auto")
    assert options["enable_idempotence"] is False
    assert broker_options(kafka, "test-auto")["enable_idempotence"] is False
    # The refusal is an answer, not a fault: nothing is logged as an error.
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]
    assert any("at-least-once" in r.getMessage() for r in caplog.records)
    # An idempotent producer's start would fail here; this one starts.
    producer = AIOKafkaProducer(**options)
    try:
        await producer.start()
    finally:
        await producer.stop()


async def test_a_faststream_consumer_reaches_the_broker_through_a_list_of_several(
    embedded_broker: EmbeddedBroker, unique: str
) -> None:
    # A cluster's bootstrap list: a node that is down, then one that serves.
    servers = f"127.0.0.1:{free_port()},{embedded_broker.bootstrap_servers}"
    kafka = settings("off", servers)
    topic = f"several-{unique}"
    await runtime_topics.create(kafka, {topic: 1})
    broker = KafkaBroker(**broker_options(kafka, "test-several"))
    subscriber = broker.subscriber(
        topic, group_id=f"g-{unique}", auto_offset_reset="earliest"
    )
    subscriber(_ignore)
    try:
        async with asyncio.timeout(30):
            await broker.start()
    finally:
        await broker.stop()


async def _ignore(body: bytes) -> None:
    del body


async def test_a_refused_producer_id_is_logged_as_an_error_only_outside_a_question(
    embedded_broker: EmbeddedBroker, caplog: pytest.LogCaptureFixture
) -> None:
    # As the router asks for transactions: a transactional producer's start.
    kafka = settings("off", embedded_broker.bootstrap_servers)

    async def start_transactional() -> None:
        producer = AIOKafkaProducer(
            **producer_config(kafka, "test-question", transactional_id="test.tid")
        )
        try:
            with pytest.raises(KafkaError):
                await producer.start()
        finally:
            await producer.stop()

    with caplog.at_level(logging.INFO):
        with asking_for_producer_id():
            await start_transactional()
        asked = [r for r in caplog.records if r.levelno >= logging.ERROR]
        await start_transactional()
    assert not asked
    assert [r for r in caplog.records if r.levelno >= logging.ERROR]
