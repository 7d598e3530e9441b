"""A record's top-level fields read and written one by one (plain datums, no I/O).

Avro writes a record as its fields' encodings one after another, so the bytes of
an event's ``payload`` can be cut out of a message and written again unchanged
behind a newly encoded ``envelope``. The router does this for deliveries whose
payload is the publisher's own, and writes a payload shared by several deliveries
of one event once: encoding was most of its cost per event.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import fastavro

from services.contracts.catalog import SchemaEntry
from services.contracts.codec import (
    HEADER_SIZE,
    READ_FAILURES,
    WRITE_FAILURES,
    body_codec,
    check_fully_read,
    explain_read,
)
from services.contracts.errors import RecordInvalidError, SchemaCatalogError
from services.contracts.readers import Read
from services.contracts.schema_json import index_named, inline, strip_logical_types
from services.contracts.writers import Encode


@dataclass(frozen=True, slots=True)
class Segments:
    """The top-level fields of one record schema, each parsed on its own (plain)."""

    entry: SchemaEntry
    names: tuple[str, ...]
    parsed: tuple[Any, ...]
    readers: tuple[Read, ...]  # one per field, built once
    writers: tuple[Encode, ...]


def split(entry: SchemaEntry) -> Segments:
    """Parse every top-level field of ``entry`` as a self-contained schema."""
    schema = entry.schema
    if not isinstance(schema, dict) or schema.get("type") != "record":
        raise SchemaCatalogError(f"{entry.name} v{entry.version} is not a record")
    named = index_named([schema])
    namespace = schema.get("namespace")
    parsed = []
    for spec in schema["fields"]:
        part = strip_logical_types(inline(spec["type"], named, namespace))
        try:
            parsed.append(fastavro.parse_schema(part))
        except (fastavro.schema.SchemaParseException, KeyError, TypeError) as e:
            raise SchemaCatalogError(
                f"field {spec['name']} of {entry.name} v{entry.version} does not "
                f"parse on its own: {e}"
            ) from e
    names = tuple(f["name"] for f in schema["fields"])
    codecs = [body_codec(p) for p in parsed]
    readers = tuple(c.read for c in codecs)
    writers = tuple(c.write for c in codecs)
    return Segments(entry, names, tuple(parsed), readers, writers)


def read(segments: Segments, data: bytes) -> tuple[dict[str, Any], list[int]]:
    """The plain datum of ``data`` and where each top-level field's bytes start.

    The offsets end with ``len(data)``, so field ``i`` is ``data[at[i]:at[i + 1]]``.
    Raises the same errors as `codec.read_body`.
    """
    datum: dict[str, Any] = {}
    position = HEADER_SIZE
    starts = [position]
    try:
        for name, read in zip(segments.names, segments.readers, strict=True):
            datum[name], position = read(data, position)
            starts.append(position)
    except READ_FAILURES as e:
        raise explain_read(segments.entry, e) from e
    check_fully_read(segments.entry, position, len(data))
    return datum, starts


def write(segments: Segments, index: int, value: Any) -> bytes:
    """The encoding of top-level field ``index`` holding ``value``.

    Not strict (a third of the cost): values come from a decoder or a compiled
    projection of the same schema, and only fields the schema names are written.
    """
    try:
        return segments.writers[index](value)
    except WRITE_FAILURES as e:
        name = segments.names[index]
        raise RecordInvalidError(
            name, f"a {name} of {segments.entry.name}", type(e).__name__
        ) from e
