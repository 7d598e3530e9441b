"""Minimal valid natural-JSON records built from a schema (benchmarks and tests).

Only required fields are filled, each with a neutral value: no realistic personal
data is ever made up here.
"""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any, Final

from services.contracts.catalog import SchemaEntry
from services.contracts.natural import format_timestamp
from services.contracts.schema_json import PRIMITIVES, full_name

_VALUES: Final[dict[str, Any]] = {
    "boolean": False,
    "int": 1,
    "long": 1,
    "float": 1.5,
    "double": 1.5,
    "string": "x",
    "bytes": "AAE=",
}


def minimal_event(
    entry: SchemaEntry,
    source: str = "dgme",
    event_id: str | None = None,
    *,
    at: datetime | None = None,
) -> Any:
    """A record of ``entry`` with only its required fields, as natural JSON.

    An event (a record with an envelope) is published by ``source`` as ``event_id``
    (default: a fresh one). Timestamps and dates are ``at`` (default: now); every
    uuid is fresh.
    """
    record = _Builder(at or datetime.now(UTC)).value(entry.schema, None)
    envelope = record.get("envelope") if isinstance(record, dict) else None
    if envelope is not None:
        envelope["event_id"] = event_id or str(uuid.uuid4())
        envelope["event_type"] = entry.name
        envelope["source_institution_id"] = source
    return record


class _Builder:
    def __init__(self, at: datetime) -> None:
        self.at = at
        self.named: dict[str, Any] = {}

    def value(self, schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self.primitive(schema, None)
            return self.value(self.named[full_name(schema, namespace)], namespace)
        if isinstance(schema, list):
            return None if "null" in schema else self.value(schema[0], namespace)
        kind = schema["type"]
        if kind in ("record", "enum"):
            name = full_name(schema["name"], schema.get("namespace", namespace))
            self.named[name] = schema
            if kind == "enum":
                return schema["symbols"][0]
            own = name.rpartition(".")[0] or None
            return {
                f["name"]: self.value(f["type"], own)
                for f in schema["fields"]
                if "default" not in f
            }
        if kind in ("array", "map"):
            return [] if kind == "array" else {}
        if isinstance(kind, str) and kind in PRIMITIVES:
            return self.primitive(kind, schema.get("logicalType"))
        return self.value(kind, namespace)

    def primitive(self, kind: str, logical: str | None) -> Any:
        if logical == "uuid":
            return str(uuid.uuid4())
        if logical == "timestamp-millis":
            return format_timestamp(self.at)
        if logical == "date":
            return self.at.date().isoformat()
        return _VALUES[kind]
