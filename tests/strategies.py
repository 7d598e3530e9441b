"""Hypothesis strategies for Avro datums of any schema (records as fastavro reads them).

``datums(schema)`` covers records, enums, arrays, maps, ``["null", T]`` unions,
primitives and the logical types uuid, date and timestamp-millis (millisecond
precision, aware UTC), so ``decode(encode(x)) == x`` holds for what it draws.
``overrides`` replaces the strategy at dotted field paths (arrays and maps are
transparent), e.g. ``{"payload.receiving_institution_id": st.sampled_from(ids)}``.
"""

from __future__ import annotations

import string
from collections.abc import Mapping
from datetime import UTC, date, datetime, timedelta
from typing import Any

from hypothesis import strategies as st

from services.contracts.schema_json import PRIMITIVES, full_name

Strategy = st.SearchStrategy[Any]

_TEXT = st.text(string.ascii_letters + string.digits + " -_.áéñ", max_size=12)
_TIMES = st.datetimes(
    min_value=datetime(2000, 1, 1),  # noqa: DTZ001 - hypothesis wants naive bounds
    max_value=datetime(2100, 1, 1),  # noqa: DTZ001
    timezones=st.just(UTC),
).map(lambda t: t.replace(microsecond=t.microsecond // 1000 * 1000))
_PRIMITIVE: Mapping[tuple[str, str | None], Strategy] = {
    ("null", None): st.none(),
    ("boolean", None): st.booleans(),
    ("int", None): st.integers(-(2**31), 2**31 - 1),
    ("long", None): st.integers(-(2**63), 2**63 - 1),
    ("float", None): st.floats(width=32, allow_nan=False, allow_infinity=False),
    ("double", None): st.floats(allow_nan=False, allow_infinity=False),
    ("string", None): _TEXT,
    ("bytes", None): st.binary(max_size=16),
    ("string", "uuid"): st.uuids(),
    ("int", "date"): st.dates(min_value=date(1900, 1, 1), max_value=date(2100, 1, 1)),
    ("long", "timestamp-millis"): _TIMES,
}


def datums(
    schema: Any,
    overrides: Mapping[str, Strategy] | None = None,
    *,
    max_items: int = 3,
) -> Strategy:
    """A strategy drawing valid datums of the (self-contained) Avro ``schema``."""
    return _Builder(dict(overrides or {}), max_items).build(schema, None, "")


class _Builder:
    def __init__(self, overrides: dict[str, Strategy], max_items: int) -> None:
        self.overrides = overrides
        self.max_items = max_items
        self.named: dict[str, Any] = {}

    def build(self, schema: Any, namespace: str | None, path: str) -> Strategy:
        if path in self.overrides:
            self._register_only(schema, namespace)
            return self.overrides[path]
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return _PRIMITIVE[(schema, None)]
            name = full_name(schema, namespace)
            return self.build(self.named[name], namespace, path)
        if isinstance(schema, list):
            return st.one_of(*(self.build(b, namespace, path) for b in schema))
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, namespace, path)
        if kind == "enum":
            self._name(schema, namespace)
            return st.sampled_from(schema["symbols"])
        if kind == "array":
            item = self.build(schema["items"], namespace, path)
            return st.lists(item, max_size=self.max_items)
        if kind == "map":
            value = self.build(schema["values"], namespace, path)
            return st.dictionaries(_TEXT, value, max_size=self.max_items)
        if kind == "fixed":
            self._name(schema, namespace)
            return st.binary(min_size=schema["size"], max_size=schema["size"])
        if isinstance(kind, str) and kind in PRIMITIVES:
            return _PRIMITIVE[(kind, schema.get("logicalType"))]
        return self.build(kind, namespace, path)

    def _name(self, schema: Mapping[str, Any], namespace: str | None) -> str:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        self.named.setdefault(name, schema)
        return name

    def _record(
        self, schema: Mapping[str, Any], namespace: str | None, path: str
    ) -> Strategy:
        name = self._name(schema, namespace)
        own_ns = name.rpartition(".")[0] or None
        fields = {
            f["name"]: self.build(
                f["type"], own_ns, f"{path}.{f['name']}" if path else f["name"]
            )
            for f in schema["fields"]
        }
        return st.fixed_dictionaries(fields)

    def _register_only(self, schema: Any, namespace: str | None) -> None:
        """Record named types defined under an overridden path (used again later)."""
        if isinstance(schema, list):
            for branch in schema:
                self._register_only(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                name = self._name(schema, namespace)
                own_ns = name.rpartition(".")[0] or None
                for field in schema.get("fields", []):
                    self._register_only(field["type"], own_ns)
            elif kind == "array":
                self._register_only(schema["items"], namespace)
            elif kind == "map":
                self._register_only(schema["values"], namespace)


def routing(
    publish_rights: Mapping[str, frozenset[str]],
    members: list[str],
    event_type: str,
    occurred: datetime,
) -> dict[str, Strategy]:
    """Overrides that steer generated events to what the router accepts.

    A publisher holding the right, the event's own type, times in the past, and
    institutions from ``members`` where a record names one.
    """
    publishers = sorted(s for s, types in publish_rights.items() if event_type in types)
    return {
        "envelope.source_institution_id": st.sampled_from(publishers),
        "envelope.event_type": st.just(event_type),
        "envelope.occurred_at": st.just(occurred),
        "envelope.recorded_at": st.just(occurred + timedelta(minutes=5)),
        "payload.receiving_institution_id": st.sampled_from(sorted(members)),
        # A referral comes from one of its parties (see samples.authored_referral).
        "payload.referring_institution_id": st.sampled_from(publishers),
    }
