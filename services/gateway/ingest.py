"""Natural JSON -> an outbox entry: validate, check the source, encode. Pure, no I/O."""

from __future__ import annotations

import hashlib
from typing import Any, NamedTuple

from services.contracts import codec, headers, topics
from services.contracts.catalog import SchemaEntry
from services.contracts.errors import RecordInvalidError
from services.contracts.natural import codec_for
from services.gateway import problems
from services.gateway.outbox import Entry, encode_headers


class Limits(NamedTuple):
    """Sizes one event may reach: what the router and the broker accept."""

    event_bytes: int  # the encoded Avro value (the router's max_event_bytes)
    record_bytes: int  # value, key and headers together (the producer's request size)


def prepare(
    entry: SchemaEntry, caller: str, body: Any, limits: Limits | None = None
) -> Entry:
    """Turn a parsed natural-JSON event into the encoded record the relay sends.

    Raises `RecordInvalidError` when the event does not match its schema, a 403
    `ProblemError` when its envelope names another institution as the source, and a
    413 `ProblemError` when the encoded record is larger than ``limits`` allow.
    """
    datum = codec_for(entry).to_plain_datum(body)
    envelope = datum["envelope"]
    if envelope["event_type"] != entry.name:
        raise RecordInvalidError(
            "envelope.event_type", f"{entry.name!r} (the event type of the request)"
        )
    if envelope["source_institution_id"] != caller:
        raise problems.source_mismatch(caller)
    value = codec.encode(entry, datum, plain=True)
    event_id = str(envelope["event_id"])
    key = record_key(entry.name, datum, event_id).encode("utf-8")
    kafka_headers = headers.build(headers.for_envelope(envelope))
    kafka_headers += headers.dataschema(entry.fingerprint)
    if limits is not None:
        check_size(limits, value, key, kafka_headers)
    return Entry(
        source=caller,
        event_type=entry.name,
        event_id=event_id,
        topic=topics.inbound(caller, entry.name),
        key=key,
        value=value,
        headers=encode_headers(kafka_headers),
        content_hash=hashlib.sha256(value).digest(),
    )


def check_size(
    limits: Limits, value: bytes, key: bytes, kafka_headers: headers.KafkaHeaders
) -> None:
    """Raise a 413 `ProblemError` for a record the router or the broker would refuse.

    Checked before the outbox: a record stored there that the broker refuses would
    otherwise wait in front of every later one.
    """
    if len(value) > limits.event_bytes:
        raise problems.event_too_large(len(value), limits.event_bytes)
    record = len(value) + len(key) + sum(len(k) + len(v) for k, v in kafka_headers)
    if record > limits.record_bytes:
        raise problems.event_too_large(record, limits.record_bytes)


def record_key(event_type: str, datum: Any, event_id: str) -> str:
    """``subject_key`` if set, else a referral's ``referral_id``, else the event id.

    The router re-keys every record; this key only spreads the inbound topic and
    keeps one referral's lifecycle on one partition.
    """
    subject_key = datum["envelope"].get("subject_key")
    if subject_key:
        return str(subject_key)
    if event_type == "referral":
        return str(datum["payload"]["referral_id"])
    return event_id


def event_type_of(body: Any) -> str | None:
    """``envelope.event_type`` of a batch item, if it has one."""
    if isinstance(body, dict):
        envelope = body.get("envelope")
        if isinstance(envelope, dict):
            value = envelope.get("event_type")
            return value if isinstance(value, str) else None
    return None
