"""Natural JSON -> an outbox entry: validate, check the source, encode. Pure, no I/O."""

from __future__ import annotations

import hashlib
from typing import Any

from services.contracts import codec, headers, topics
from services.contracts.catalog import SchemaEntry
from services.contracts.errors import RecordInvalidError
from services.contracts.natural import codec_for
from services.gateway import problems
from services.gateway.outbox import Entry, encode_headers


def prepare(entry: SchemaEntry, caller: str, body: Any) -> Entry:
    """Turn a parsed natural-JSON event into the encoded record the relay sends.

    Raises `RecordInvalidError` when the event does not match its schema, and a 403
    `ProblemError` when its envelope names another institution as the source.
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
    return Entry(
        source=caller,
        event_type=entry.name,
        event_id=event_id,
        topic=topics.inbound(caller, entry.name),
        key=record_key(entry.name, datum, event_id).encode("utf-8"),
        value=value,
        headers=encode_headers(headers.build(headers.for_envelope(envelope))),
        content_hash=hashlib.sha256(value).digest(),
    )


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
