"""Minimal valid natural-JSON events built from a schema (for the benchmark and tests).

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

_VALUES: Final[dict[tuple[str, str | None], Any]] = {
    ("boolean", None): False,
    ("int", None): 1,
    ("long", None): 1,
    ("float", None): 1.0,
    ("double", None): 1.0,
    ("string", None): "x",
    ("bytes", None): "AA==",
    ("int", "date"): "2026-01-15",
}


def minimal_event(entry: SchemaEntry, source: str, event_id: str | None = None) -> Any:
    """A natural-JSON event of ``entry``'s type, published by ``source``."""
    event = _Builder().value(entry.schema, None)
    envelope = event["envelope"]
    envelope["event_id"] = event_id or str(uuid.uuid4())
    envelope["event_type"] = entry.name
    envelope["source_institution_id"] = source
    return event


class _Builder:
    def __init__(self) -> None:
        self.named: dict[str, Any] = {}

    def value(self, schema: Any, namespace: str | None) -> Any:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _primitive(schema, None)
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
            return _primitive(kind, schema.get("logicalType"))
        return self.value(kind, namespace)


def _primitive(kind: str, logical: str | None) -> Any:
    if logical == "uuid":
        return str(uuid.uuid4())
    if logical == "timestamp-millis":
        return format_timestamp(datetime.now(UTC))
    return _VALUES.get((kind, logical), _VALUES[(kind, None)])
