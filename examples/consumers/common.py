"""What both example consumers share: connecting with kafka-python, framing the values.

Connection settings come from the environment, as a ministry's deployment would
give them: ``KAFKA_BOOTSTRAP_SERVERS`` and, for the hub's SASL/SCRAM listeners,
``KAFKA_SECURITY_PROTOCOL`` (``SASL_PLAINTEXT`` or ``SASL_SSL``),
``KAFKA_SASL_MECHANISM`` (``SCRAM-SHA-512``), ``KAFKA_SASL_USERNAME``,
``KAFKA_SASL_PASSWORD`` and, with TLS, ``KAFKA_SSL_CAFILE``.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from typing import Any

from kafka import KafkaConsumer

MAGIC = b"\xc3\x01"


def records(topic: str, idle_ms: int) -> Iterator[Any]:
    """Every record of ``topic`` from the beginning, until ``idle_ms`` pass idle."""
    options: dict[str, Any] = {
        "bootstrap_servers": os.environ["KAFKA_BOOTSTRAP_SERVERS"].split(","),
        "security_protocol": os.environ.get("KAFKA_SECURITY_PROTOCOL", "PLAINTEXT"),
        "group_id": None,
        "auto_offset_reset": "earliest",
        "enable_auto_commit": False,
        "consumer_timeout_ms": idle_ms,
    }
    if os.environ.get("KAFKA_SASL_MECHANISM"):
        options["sasl_mechanism"] = os.environ["KAFKA_SASL_MECHANISM"]
        options["sasl_plain_username"] = os.environ["KAFKA_SASL_USERNAME"]
        options["sasl_plain_password"] = os.environ["KAFKA_SASL_PASSWORD"]
    if os.environ.get("KAFKA_SSL_CAFILE"):
        options["ssl_cafile"] = os.environ["KAFKA_SSL_CAFILE"]
    consumer = KafkaConsumer(topic, **options)
    try:
        yield from consumer
    finally:
        consumer.close()


def split(value: bytes) -> tuple[bytes, bytes]:
    """An Avro single-object encoded value: (8 fingerprint bytes, Avro body)."""
    if value[:2] != MAGIC:
        raise ValueError("not Avro single-object encoding (no C3 01 marker)")
    return value[2:10], value[10:]


def headers_of(record: Any) -> dict[str, str]:
    """The record's CloudEvents headers as text."""
    return {k: (v or b"").decode() for k, v in record.headers}


def line(record: Any, schema_file: str, event: Any) -> str:
    """One JSON line per decoded delivery."""
    headers = headers_of(record)
    return json.dumps(
        {
            "topic": record.topic,
            "offset": record.offset,
            "ce_id": headers.get("ce_id"),
            "ce_dataschema": headers.get("ce_dataschema"),
            "schema_file": schema_file,
            "event": event,
        },
        default=str,
        ensure_ascii=False,
    )
