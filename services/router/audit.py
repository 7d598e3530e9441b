"""Audit entries encoded from cached segments.

An Avro record's binary form is its fields' encodings one after another, so an
entry is written in three parts: the decision id (one Avro string, written here),
and two sub-records written by compiled writers (`contracts.writers`): the part
shared by every decision on one event, and the part fixed per rule outcome (its
60-odd disclosed field paths were most of the cost), which is cached. Tests check
the bytes equal a whole-record encode.
"""

from __future__ import annotations

from typing import Any, Final

import fastavro

from services.contracts.catalog import SchemaEntry
from services.contracts.errors import SchemaCatalogError
from services.contracts.schema_json import strip_logical_types
from services.contracts.writers import writer_for

HEAD: Final = ("audit_id",)
PER_EVENT: Final = (
    "event_id",
    "event_type",
    "source_institution_id",
    "subject_key",
    "decided_at",
)
PER_RULE: Final = (
    "policy_version",
    "recipient_institution_id",
    "decision",
    "withheld_reason",
    "view",
    "rule_id",
    "purpose",
    "legal_basis",
    "disclosed_fields",
)


class AuditEncoder:
    """Encodes ``audit_entry`` records; plain datums (ids as str, times as epoch ms)."""

    def __init__(self, entry: SchemaEntry) -> None:
        fields = entry.schema["fields"]
        if tuple(f["name"] for f in fields) != HEAD + PER_EVENT + PER_RULE:
            raise SchemaCatalogError(
                f"audit_entry v{entry.version} fields are not in the order the router "
                "encodes them in; update services/router/audit.py"
            )
        self.entry = entry
        head = fields[0]["type"]
        if (head.get("type") if isinstance(head, dict) else head) != "string":
            raise SchemaCatalogError(
                f"audit_entry v{entry.version}: audit_id is no longer a plain string; "
                "update services/router/audit.py"
            )
        self._event = writer_for(_segment(fields[1:6], "AuditEvent"))
        self._rule = writer_for(_segment(fields[6:], "AuditRule"))
        self._cache: dict[tuple[Any, ...], bytes] = {}

    def event_part(
        self,
        event_id: str,
        event_type: str,
        source: str,
        subject_key: str | None,
        decided_at_ms: int,
    ) -> bytes:
        """The bytes shared by every decision on one event."""
        return self._event(
            {
                "event_id": event_id,
                "event_type": event_type,
                "source_institution_id": source,
                "subject_key": subject_key,
                "decided_at": decided_at_ms,
            },
        )

    def encode(self, audit_id: str, event_part: bytes, rule: tuple[Any, ...]) -> bytes:
        """A whole single-object message from the cached per-rule tail.

        ``rule`` holds the PER_RULE values in order, the field paths as a tuple.
        """
        key = tuple(rule)
        tail = self._cache.get(key)
        if tail is None:
            values = dict(zip(PER_RULE, rule, strict=True))
            values["disclosed_fields"] = list(values["disclosed_fields"])
            tail = self._rule(values)
            self._cache[key] = tail
        return b"".join((self.entry.header, avro_string(audit_id), event_part, tail))


def avro_string(text: str) -> bytes:
    """An Avro ``string``: zig-zag varint length, then UTF-8 (the whole head segment)."""
    data = text.encode()
    size = len(data) << 1  # zig-zag of a non-negative length
    prefix = bytearray()
    while size > 0x7F:
        prefix.append((size & 0x7F) | 0x80)
        size >>= 7
    prefix.append(size)
    return bytes(prefix) + data


def _segment(fields: list[Any], name: str) -> Any:
    schema = {
        "type": "record",
        "name": name,
        "namespace": "sv.mcnmh.hub.router",
        "fields": fields,
    }
    try:
        return fastavro.parse_schema(strip_logical_types(schema))
    except (fastavro.schema.SchemaParseException, KeyError, TypeError, ValueError) as e:
        raise SchemaCatalogError(f"audit_entry segment {name} does not parse: {e}") from e
