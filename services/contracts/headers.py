"""CloudEvents Kafka binding, binary mode.

Headers are for routing and tooling; the record is authoritative. Every record the
hub writes also names its writer schema in ``ce_dataschema``: the URN
``urn:puente:schema:<fingerprint>`` (16 hex digits, the CRC-64-AVRO fingerprint in
wire byte order, as the single-object header carries it), which ``puente schemas
show --fingerprint`` and the gateway's ``GET /v1/schemas/{fingerprint}`` resolve.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from services.contracts.errors import HeaderError
from services.contracts.natural import format_timestamp

SPEC_VERSION: Final = "1.0"
CONTENT_TYPE: Final = "application/avro"
# Delivery extensions. Never the rule id: a rule's id or condition can reveal a value
# the view withholds, so rule ids stay in the audit ledger.
VIEW: Final = "puente_view"
PURPOSE: Final = "puente_purpose"
LEGAL_BASIS: Final = "puente_legal_basis"
POLICY_VERSION: Final = "puente_policy_version"
DATASCHEMA: Final = "ce_dataschema"
# A refusal notice: a record without a value that stands in, on the same hub.in topic,
# for an event the gateway accepted and the broker then refused for good. It carries
# the event's CloudEvents headers and these; the router answers it with a rejection
# to the publisher and routes it to no one.
REFUSED: Final = "puente_refused"  # the reason code, e.g. ``too_large``
REFUSED_BYTES: Final = "puente_refused_bytes"  # the refused record's size
REFUSED_LIMIT: Final = "puente_refused_limit"  # the size it exceeded, when known
REFUSAL_HEADERS: Final = frozenset({REFUSED, REFUSED_BYTES, REFUSED_LIMIT})
SCHEMA_URN_PREFIX: Final = "urn:puente:schema:"

KafkaHeaders = list[tuple[str, bytes]]


@dataclass(frozen=True, slots=True)
class CloudEvent:
    """The CloudEvents attributes of one Kafka record, plus Puente's extensions."""

    id: str
    source: str
    type: str
    time: str | None = None
    extensions: Mapping[str, str] = field(default_factory=dict)
    dataschema: str | None = None


def for_envelope(envelope: Mapping[str, Any]) -> CloudEvent:
    """The CloudEvents attributes of a decoded event envelope."""
    occurred = envelope.get("occurred_at")
    if isinstance(occurred, int):  # plain datums hold epoch milliseconds
        occurred = datetime.fromtimestamp(occurred / 1000, UTC)
    return CloudEvent(
        id=str(envelope["event_id"]),
        source=str(envelope["source_institution_id"]),
        type=str(envelope["event_type"]),
        time=format_timestamp(occurred) if isinstance(occurred, datetime) else None,
    )


_SPEC: Final = ("ce_specversion", SPEC_VERSION.encode())
_CONTENT: Final = ("content-type", CONTENT_TYPE.encode())


def build(event: CloudEvent) -> KafkaHeaders:
    """Kafka headers for ``event`` in CloudEvents binary mode."""
    headers = attributes(event.id, event.source, event.type, event.time)
    if event.dataschema is not None:
        headers.append((DATASCHEMA, event.dataschema.encode()))
    headers.extend(extensions(event.extensions))
    return headers


def attributes(
    event_id: str, source: str, event_type: str, time: str | None
) -> KafkaHeaders:
    """The CloudEvents attribute headers alone, in `build`'s order (hot path)."""
    headers: KafkaHeaders = [
        _SPEC,
        ("ce_id", event_id.encode()),
        ("ce_source", source.encode()),
        ("ce_type", event_type.encode()),
        _CONTENT,
    ]
    if time is not None:
        headers.append(("ce_time", time.encode()))
    return headers


def schema_urn(fingerprint_hex: str) -> str:
    """The ``ce_dataschema`` URN of the schema with this fingerprint (wire order)."""
    return SCHEMA_URN_PREFIX + fingerprint_hex


def dataschema(fingerprint: int) -> KafkaHeaders:
    """The ``ce_dataschema`` header naming a writer schema by its fingerprint.

    Takes `SchemaEntry.fingerprint`; the header is built once per schema (the
    router adds it to every record it writes).
    """
    return [_dataschema(fingerprint)]


@functools.lru_cache(maxsize=4096)
def _dataschema(fingerprint: int) -> tuple[str, bytes]:
    wire = fingerprint.to_bytes(8, "little").hex()
    return (DATASCHEMA, schema_urn(wire).encode())


def extensions(values: Mapping[str, str]) -> KafkaHeaders:
    """Extension headers (``puente_*``), after the attributes."""
    return [(k, v.encode()) for k, v in values.items()]


def event_id_of(headers: Iterable[tuple[str, bytes | None]]) -> str | None:
    """The ``ce_id`` of a record's headers, without parsing the rest."""
    return next(((v or b"").decode() for k, v in headers if k == "ce_id"), None)


def parse(headers: Iterable[tuple[str, bytes | None]]) -> CloudEvent:
    """Read CloudEvents attributes from Kafka headers; raise `HeaderError` if absent."""
    values: dict[str, str] = {}
    for key, raw in headers:
        try:
            values.setdefault(key, (raw or b"").decode("utf-8"))
        except UnicodeDecodeError as e:
            raise HeaderError(f"header {key[:64]!r} is not UTF-8") from e
    if values.get("ce_specversion") != SPEC_VERSION:
        raise HeaderError("header ce_specversion is missing or not 1.0")
    missing = [k for k in ("ce_id", "ce_source", "ce_type") if not values.get(k)]
    if missing:
        raise HeaderError(f"CloudEvents header(s) missing: {', '.join(missing)}")
    extensions = {k: v for k, v in values.items() if k.startswith("puente_")}
    return CloudEvent(
        id=values["ce_id"],
        source=values["ce_source"],
        type=values["ce_type"],
        time=values.get("ce_time"),
        extensions=extensions,
        dataschema=values.get(DATASCHEMA),
    )
