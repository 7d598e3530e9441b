"""Small, valid natural-JSON records built from any schema (for tests only)."""

from __future__ import annotations

import uuid
from collections.abc import Collection
from typing import Any

from services.contracts import lifecycle
from services.contracts.catalog import SchemaEntry

_PRIMITIVE: dict[tuple[str, str | None], Any] = {
    ("boolean", None): False,
    ("int", None): 1,
    ("long", None): 1,
    ("float", None): 1.5,
    ("double", None): 1.5,
    ("string", None): "x",
    ("bytes", None): "AAE=",
    ("string", "uuid"): "00000000-0000-4000-8000-000000000001",
    ("int", "date"): "2026-11-02",
    ("long", "timestamp-millis"): "2026-11-02T14:05:00.123Z",
}


def minimal(entry: SchemaEntry, **envelope: Any) -> Any:
    """A record with only its required fields, each set to a simple valid value."""
    named: dict[str, Any] = {}
    record = _value(entry.schema, named)
    if "envelope" in record:
        record["envelope"].update(
            event_id=str(uuid.uuid4()),
            event_type=entry.name,
            source_institution_id="dgme",
        )
        record["envelope"].update(envelope)
    return record


def _value(schema: Any, named: dict[str, Any]) -> Any:
    if isinstance(schema, str):
        return (
            _PRIMITIVE[(schema, None)]
            if (schema, None) in _PRIMITIVE
            else _value(named[schema], named)
        )
    if isinstance(schema, list):
        return None if "null" in schema else _value(schema[0], named)
    kind = schema["type"]
    if kind == "record":
        named[f"{schema.get('namespace')}.{schema['name']}"] = schema
        return {
            f["name"]: _value(f["type"], named)
            for f in schema["fields"]
            if "default" not in f
        }
    if kind == "enum":
        named[f"{schema.get('namespace')}.{schema['name']}"] = schema
        return schema["symbols"][0]
    if kind == "array":
        return []
    if kind == "map":
        return {}
    if isinstance(kind, dict | list):
        return _value(kind, named)
    return _PRIMITIVE[(kind, schema.get("logicalType"))]


def authored_referral(datum: Any, publishers: Collection[str]) -> None:
    """Make a generated referral a consistent transition from its rightful author.

    Its lifecycle event, status and source then agree (`contracts.lifecycle`), so the
    router does not refuse it as forged; the source is a publisher among
    ``publishers``, switching to a referring institution's event when needed.
    """
    payload, envelope = datum["payload"], datum["envelope"]
    event = payload["lifecycle_event"]
    author = lifecycle.author_of(event)
    receiving = payload["receiving_institution_id"]
    if author == lifecycle.HUB or (
        author == lifecycle.RECEIVING and receiving not in publishers
    ):
        event = payload["lifecycle_event"] = "CREATED"
        author = lifecycle.REFERRING
    status = payload["status"] = min(lifecycle.TRANSITIONS[event][1])
    payload["previous_status"] = (
        None
        if event == "CREATED"
        else min(p for p, to in lifecycle.EDGES.items() if p and status in to)
    )
    side = "referring" if author == lifecycle.REFERRING else "receiving"
    envelope["source_institution_id"] = payload[f"{side}_institution_id"]
