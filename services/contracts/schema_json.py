"""Pure helpers over Avro schema JSON: name resolution and self-contained output.

`schemas/shared/vN.avsc` defines named types once; event schemas refer to them by
name. `inline` turns such a schema into a self-contained one where every named type
is defined at its first use and referenced by its full name afterwards
(docs/contracts.md).
"""

from __future__ import annotations

import copy
from collections.abc import Iterator, Mapping
from typing import Any, Final

from services.contracts.errors import SchemaCatalogError

PRIMITIVES: Final = frozenset(
    {"null", "boolean", "int", "long", "float", "double", "bytes", "string"}
)
NAMED: Final = frozenset({"record", "enum", "fixed", "error"})

Schema = Any  # Avro schema JSON: str | list | dict


def full_name(name: str, namespace: str | None) -> str:
    """Qualify ``name`` with ``namespace`` unless it is already dotted."""
    if "." in name or not namespace:
        return name
    return f"{namespace}.{name}"


def index_named(schemas: list[Schema], namespace: str | None = None) -> dict[str, Schema]:
    """Map each named type defined anywhere in ``schemas`` to its definition."""
    found: dict[str, Schema] = {}
    for schema in schemas:
        for name, definition in _named_definitions(schema, namespace):
            if name in found:
                raise SchemaCatalogError(f"named type {name} is defined twice")
            found[name] = definition
    return found


def _named_definitions(
    schema: Schema, namespace: str | None
) -> Iterator[tuple[str, Schema]]:
    if isinstance(schema, list):
        for branch in schema:
            yield from _named_definitions(branch, namespace)
    elif isinstance(schema, dict):
        kind = schema.get("type")
        if kind in NAMED:
            name = full_name(schema["name"], schema.get("namespace", namespace))
            yield name, schema
            inner_ns = name.rpartition(".")[0] or None
            for field in schema.get("fields", []):
                yield from _named_definitions(field["type"], inner_ns)
        elif kind == "array":
            yield from _named_definitions(schema["items"], namespace)
        elif kind == "map":
            yield from _named_definitions(schema["values"], namespace)


def inline(
    schema: Schema, named: Mapping[str, Schema], namespace: str | None = None
) -> Schema:
    """Return a self-contained copy of ``schema`` with references to ``named`` inlined."""
    return _Inliner(named).visit(copy.deepcopy(schema), namespace)


class _Inliner:
    def __init__(self, named: Mapping[str, Schema]) -> None:
        self.named = named
        self.defined: set[str] = set()

    def visit(self, schema: Schema, namespace: str | None) -> Schema:
        if isinstance(schema, str):
            return self._reference(schema, namespace)
        if isinstance(schema, list):
            return [self.visit(branch, namespace) for branch in schema]
        if not isinstance(schema, dict):
            raise SchemaCatalogError(f"not an Avro schema: {schema!r}")
        kind = schema.get("type")
        if kind in NAMED:
            return self._definition(schema, namespace)
        if kind == "array":
            schema["items"] = self.visit(schema["items"], namespace)
        elif kind == "map":
            schema["values"] = self.visit(schema["values"], namespace)
        elif isinstance(kind, str | list | dict) and kind not in PRIMITIVES:
            return self.visit(kind, namespace)
        return schema

    def _definition(self, schema: dict[str, Any], namespace: str | None) -> Schema:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        if name in self.defined:
            raise SchemaCatalogError(f"named type {name} is defined twice")
        self.defined.add(name)
        own_ns = name.rpartition(".")[0] or None
        schema["name"], schema["namespace"] = name.rpartition(".")[2], own_ns
        for field in schema.get("fields", []):
            field["type"] = self.visit(field["type"], own_ns)
        return schema

    def _reference(self, name: str, namespace: str | None) -> Schema:
        if name in PRIMITIVES:
            return name
        qualified = full_name(name, namespace)
        if qualified in self.defined:
            return qualified
        if qualified not in self.named:
            raise SchemaCatalogError(f"unknown named type {qualified}")
        return self._definition(copy.deepcopy(self.named[qualified]), namespace)


def strip_logical_types(schema: Schema) -> Schema:
    """A copy of ``schema`` whose logical types are their underlying primitives.

    Logical types do not change the binary encoding, so both read the same bytes.
    """
    if isinstance(schema, list):
        return [strip_logical_types(s) for s in schema]
    if not isinstance(schema, dict):
        return schema
    if "logicalType" in schema and schema.get("type") in PRIMITIVES:
        return schema["type"]
    return {k: strip_logical_types(v) for k, v in schema.items()}
