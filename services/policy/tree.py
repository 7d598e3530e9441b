"""A record schema as a tree of field paths with their sensitivity and shape.

Built once per schema from the self-contained JSON (``SchemaEntry.schema``). Paths are
dotted field names from the record root, e.g. ``payload.person_profile.sex``; arrays
and maps are transparent (``payload.person_identity.documents.document_number``),
so one path names a field however many elements hold it. Named types used at several
places are expanded at each place, so every path has its own node.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Final, Literal

from services.contracts.schema_json import PRIMITIVES, Schema, full_name
from services.policy.errors import PolicyError

Kind = Literal["record", "enum", "array", "map", "scalar"]
SENSITIVITIES: Final = (
    "INTERNAL",
    "QUASI_IDENTIFIER",
    "DIRECT_IDENTIFIER",
    "SENSITIVE",
    "HIGHLY_SENSITIVE",
)
# Values of these types are not plain JSON once decoded (datetime, date, UUID, bytes),
# so conditions may not look at them (see conditions.py).
_NOT_JSON: Final = frozenset({"timestamp-millis", "date", "uuid", "bytes"})


@dataclass(frozen=True, slots=True)
class Shape:
    """The type of a field once ``["null", T]`` is unwrapped to ``T``."""

    kind: Kind
    name: str | None = None
    symbols: tuple[str, ...] = ()
    fields: tuple[Node, ...] = ()
    item: Shape | None = None
    primitive: str | None = None
    logical: str | None = None

    @property
    def json_plain(self) -> bool:
        """Whether decoded values are plain JSON (str, number, bool, list, dict)."""
        if self.kind in ("array", "map"):
            return self.item is not None and self.item.json_plain
        if self.kind == "scalar":
            return (self.logical or self.primitive) not in _NOT_JSON
        return True

    @property
    def describe(self) -> str:
        """A short human name of the type, for error messages."""
        if self.kind == "scalar":
            return self.logical or self.primitive or "scalar"
        if self.kind in ("array", "map"):
            return f"{self.kind} of {self.item.describe if self.item else '?'}"
        return f"{self.kind} {(self.name or '').rpartition('.')[2]}"


@dataclass(frozen=True, slots=True)
class Node:
    """One field at one path."""

    path: str
    name: str
    sensitivity: str
    shape: Shape
    nullable: bool
    # An identifier every recipient of an event would otherwise share (event and
    # record ids): pseudonymous views carry a per-recipient substitute instead.
    linkable: bool = False

    @property
    def record(self) -> Shape | None:
        """The record shape reached through this field (through arrays/maps too)."""
        shape: Shape | None = self.shape
        while shape is not None and shape.kind in ("array", "map"):
            shape = shape.item
        return shape if shape is not None and shape.kind == "record" else None


class SchemaTree:
    """Every field path of one record schema."""

    def __init__(self, schema: Schema) -> None:
        self._named: dict[str, Mapping[str, Any]] = {}
        self.root = self._shape(schema, None, "", ())
        if self.root.kind != "record":
            raise PolicyError("a policy schema must be a record")
        self.nodes: dict[str, Node] = dict(_walk(self.root))

    def get(self, path: str) -> Node | None:
        """The node at ``path``, or None."""
        return self.nodes.get(path)

    def children(self, path: str) -> tuple[Node, ...]:
        """The fields directly under ``path`` ("" for the root)."""
        if not path:
            return self.root.fields
        node = self.nodes.get(path)
        record = node.record if node else None
        return record.fields if record else ()

    def ancestors(self, path: str) -> list[str]:
        """Every proper ancestor path of ``path``, outermost first."""
        parts = path.split(".")
        return [".".join(parts[:i]) for i in range(1, len(parts))]

    def subtree(self, path: str) -> list[str]:
        """``path`` and every path under it."""
        prefix = path + "."
        return [p for p in self.nodes if p == path or p.startswith(prefix)]

    def suggest(self, path: str) -> str:
        """A hint naming the fields that exist where ``path`` goes wrong."""
        parts = path.split(".")
        for i in range(len(parts)):
            here = ".".join(parts[: i + 1])
            if here not in self.nodes:
                parent = ".".join(parts[:i])
                names = ", ".join(n.name for n in self.children(parent))
                where = parent or "the record root"
                if not names:
                    return f"{where} has no fields below it"
                return f"{where} has: {names}"
        return ""

    def _shape(
        self, schema: Schema, namespace: str | None, path: str, stack: tuple[str, ...]
    ) -> Shape:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return Shape("scalar", primitive=schema)
            name = full_name(schema, namespace)
            if name not in self._named:
                raise PolicyError(f"schema refers to unknown named type {name}")
            return self._shape(self._named[name], namespace, path, stack)
        if isinstance(schema, list):
            others = [b for b in schema if b != "null"]
            if len(others) != 1:
                raise PolicyError(f"{path}: only [null, T] unions are supported")
            return self._shape(others[0], namespace, path, stack)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, namespace, path, stack)
        if kind == "enum":
            name = self._define(schema, namespace)
            return Shape("enum", name=name, symbols=tuple(schema["symbols"]))
        if kind == "array":
            return Shape(
                "array", item=self._shape(schema["items"], namespace, path, stack)
            )
        if kind == "map":
            return Shape(
                "map", item=self._shape(schema["values"], namespace, path, stack)
            )
        if isinstance(kind, str) and kind in PRIMITIVES:
            return Shape("scalar", primitive=kind, logical=schema.get("logicalType"))
        if kind == "fixed":
            raise PolicyError(f"{path}: fixed types are not used by the hub's schemas")
        return self._shape(kind, namespace, path, stack)

    def _define(self, schema: Mapping[str, Any], namespace: str | None) -> str:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        self._named.setdefault(name, schema)
        return name

    def _record(
        self,
        schema: Mapping[str, Any],
        namespace: str | None,
        path: str,
        stack: tuple[str, ...],
    ) -> Shape:
        name = self._define(schema, namespace)
        if name in stack:
            raise PolicyError(f"{path}: recursive record {name} cannot be projected")
        own_ns = name.rpartition(".")[0] or None
        nodes = []
        for spec in schema["fields"]:
            child = f"{path}.{spec['name']}" if path else spec["name"]
            sensitivity = spec.get("sensitivity")
            if sensitivity not in SENSITIVITIES:
                raise PolicyError(
                    f"schema field {child} has sensitivity {sensitivity!r}; "
                    f"expected one of {', '.join(SENSITIVITIES)}"
                )
            branches = spec["type"] if isinstance(spec["type"], list) else []
            shape = self._shape(spec["type"], own_ns, child, (*stack, name))
            linkable = spec.get("linkable", False) is True
            if linkable and (shape.kind, shape.primitive) != ("scalar", "string"):
                raise PolicyError(
                    f"schema field {child} is linkable but not a string; only string "
                    "identifiers can be re-keyed per recipient"
                )
            nodes.append(
                Node(
                    child, spec["name"], sensitivity, shape, "null" in branches, linkable
                )
            )
        return Shape("record", name=name, fields=tuple(nodes))


def _walk(shape: Shape) -> Iterator[tuple[str, Node]]:
    for node in shape.fields:
        yield node.path, node
        record = node.record
        if record is not None:
            yield from _walk(record)
