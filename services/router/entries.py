"""Audit entries encoded from cached segments.

An Avro record's binary form is its fields' encodings one after another, so an
entry is written in three parts: the decision id (one Avro string, written here),
and two sub-records written by compiled writers (`contracts.writers`): the part
shared by every decision on one event, and the part fixed per rule outcome (its
60-odd disclosed field paths are most of the cost), which is cached. Each part
takes its fields in the schema's order; tests check the bytes equal a whole-record
encode.
"""

from __future__ import annotations

from typing import Any, Final, NamedTuple

import fastavro

from services.contracts.catalog import SchemaEntry
from services.contracts.codec import body_codec
from services.contracts.errors import SchemaCatalogError
from services.contracts.schema_json import strip_logical_types
from services.contracts.writers import write_long

HEAD: Final = "audit_id"
# The fields every decision on one event shares; their order comes from the schema.
PER_EVENT: Final = frozenset(
    {"event_id", "event_type", "source_institution_id", "subject_key", "decided_at"}
)


class RuleOutcome(NamedTuple):
    """The fields fixed per rule outcome (cached); their order comes from the schema."""

    policy_version: str
    recipient_institution_id: str
    decision: str
    withheld_reason: str | None
    view: str
    rule_id: str
    purpose: str
    legal_basis: str
    disclosed_fields: tuple[str, ...]


class AuditEncoder:
    """Encodes ``audit_entry`` records; plain datums (ids as str, times as epoch ms)."""

    def __init__(self, entry: SchemaEntry) -> None:
        fields = entry.schema["fields"]
        _check_head(entry, fields[0])
        split = 1 + len(PER_EVENT)
        shared, per_rule = fields[1:split], fields[split:]
        if {f["name"] for f in shared} != PER_EVENT or {
            f["name"] for f in per_rule
        } != set(RuleOutcome._fields):
            raise SchemaCatalogError(
                f"audit_entry v{entry.version}: the fields shared by every decision on "
                f"an event ({', '.join(sorted(PER_EVENT))}) no longer come right after "
                "audit_id, followed by the rule outcome's; the router encodes entries "
                "in these two parts (services.router.entries)"
            )
        self.entry = entry
        self._event = body_codec(_segment(shared, "AuditEvent")).write
        self._rule = body_codec(_segment(per_rule, "AuditRule")).write
        self._cache: dict[RuleOutcome, bytes] = {}

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

    def encode(self, audit_id: str, event_part: bytes, rule: RuleOutcome) -> bytes:
        """A whole single-object message from the cached per-rule tail."""
        tail = self._cache.get(rule)
        if tail is None:
            values = rule._asdict()
            values["disclosed_fields"] = list(rule.disclosed_fields)
            tail = self._rule(values)
            self._cache[rule] = tail
        return b"".join((self.entry.header, avro_string(audit_id), event_part, tail))


def avro_string(text: str) -> bytes:
    """An Avro ``string``: its length as an Avro long, then UTF-8 (the head segment)."""
    data = text.encode()
    out = bytearray()
    write_long(len(data), out)
    out += data
    return bytes(out)


def _check_head(entry: SchemaEntry, head: Any) -> None:
    kind = head["type"]
    if head["name"] != HEAD or (kind.get("type") if isinstance(kind, dict) else kind) != (
        "string"
    ):
        raise SchemaCatalogError(
            f"audit_entry v{entry.version}: its first field is no longer the plain "
            "string audit_id the router writes itself (services.router.entries)"
        )


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
