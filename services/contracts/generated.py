"""Python functions generated from an Avro schema's text, shared by readers and writers.

fastavro looks at the schema again at every value it reads or writes; the router's
hot path spent most of its codec time there. A generator here walks a parsed schema
once and emits one plain Python function per record type, with every field's work
written out in line, then compiles it. The source is made only of names this module
invents, integer literals and ``repr`` of field names that passed the Avro name rule,
so no text from a schema is ever executed; enum symbols and defaults are handed to
the code as constants, not written into it.
"""

from __future__ import annotations

import re
from abc import ABC, abstractmethod
from collections.abc import Callable
from typing import Any, Final

# Avro spec, "Names": [A-Za-z_][A-Za-z0-9_]*; anything else is not generated.
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
INDENT: Final = "    "


class UnsupportedError(Exception):
    """A schema feature the generators do not cover (the caller uses fastavro)."""


def named_of(parsed: Any) -> dict[str, Any]:
    """The named types a ``fastavro.parse_schema`` result carries with it."""
    return dict(parsed.get("__named_schemas", {})) if isinstance(parsed, dict) else {}


def field_name(spec: dict[str, Any]) -> str:
    """A record field's name, checked against the Avro name rule."""
    name = spec["name"]
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        raise UnsupportedError(f"field name {name!r}")
    return name


def nullable(branches: list[Any]) -> tuple[Any, int, int]:
    """The non-null branch of a ``["null", T]`` union and the zig-zag indexes.

    Returns ``(T, null_index, value_index)`` as the single bytes Avro writes.
    """
    if len(branches) != 2 or "null" not in branches or branches[0] == branches[1]:
        raise UnsupportedError("a union other than null and one type")
    if branches[0] == "null":
        return branches[1], 0, 2  # zig-zag of 0 and 1
    return branches[0], 2, 0


class Source:
    """The text of generated functions, their constants and fresh local names."""

    def __init__(self, prefix: str) -> None:
        self.prefix = prefix
        self.lines: list[str] = []
        self.constants: dict[str, Any] = {}
        self.functions: dict[str, str] = {}  # record full name -> function name
        self._count = 0

    def local(self) -> str:
        """A fresh local variable name."""
        self._count += 1
        return f"v{self._count}"

    def constant(self, value: Any) -> str:
        """The name under which the generated code sees ``value``."""
        name = f"c{len(self.constants)}"
        self.constants[name] = value
        return name

    def function(self, record: str) -> tuple[str, bool]:
        """The function name for ``record``, and whether it still has to be written.

        Registered before its body is written: a field may refer back to its record.
        """
        if record in self.functions:
            return self.functions[record], False
        name = f"{self.prefix}{len(self.functions)}"
        self.functions[record] = name
        return name, True

    def compile(self, entry: str, helpers: dict[str, Any]) -> Callable[..., Any]:
        """Compile every function written so far and return the one named ``entry``."""
        namespace: dict[str, Any] = {"__builtins__": {}, **helpers, **self.constants}
        code = compile("\n".join(self.lines) + "\n", f"<avro {self.prefix}>", "exec")
        exec(code, namespace)  # noqa: S102 - text built here from checked names only
        function: Callable[..., Any] = namespace[entry]
        return function


class Emitter(ABC):
    """Walks a schema and returns the statements for one value (reader or writer).

    ``name`` is the generated code's local holding the value: read into, or written
    from. Subclasses say what each kind of value turns into.
    """

    def __init__(self, source: Source, named: dict[str, Any]) -> None:
        self.source = source
        self.named = named

    def value(self, schema: Any, name: str, depth: int, /) -> list[str]:
        """The statements, indented ``depth`` levels, for a value of ``schema``."""
        if isinstance(schema, str):
            return self.named_type(schema, name, depth)
        if isinstance(schema, list):
            return self.union(schema, name, depth)
        if not isinstance(schema, dict) or "logicalType" in schema:
            raise UnsupportedError(str(schema)[:80])
        kind = schema["type"]
        if kind in ("record", "error"):
            return [f"{INDENT * depth}{self.record_call(self.record(schema), name)}"]
        if kind == "enum":
            return self.enum(schema, name, depth)
        if kind == "array":
            return self.array(schema, name, depth)
        if kind == "map":
            return self.map(schema, name, depth)
        return self.value(kind, name, depth)

    @abstractmethod
    def named_type(self, type_name: str, name: str, depth: int, /) -> list[str]:
        """A primitive, or a named type defined elsewhere in the schema."""

    @abstractmethod
    def union(self, branches: list[Any], name: str, depth: int, /) -> list[str]:
        """A ``["null", T]`` union."""

    @abstractmethod
    def record(self, schema: dict[str, Any], /) -> str:
        """The name of the function for a record type, written once."""

    @abstractmethod
    def record_call(self, function: str, name: str, /) -> str:
        """The statement calling a record's function."""

    @abstractmethod
    def enum(self, schema: dict[str, Any], name: str, depth: int, /) -> list[str]:
        """An enum symbol."""

    @abstractmethod
    def array(self, schema: dict[str, Any], name: str, depth: int, /) -> list[str]:
        """An array."""

    @abstractmethod
    def map(self, schema: dict[str, Any], name: str, depth: int, /) -> list[str]:
        """A map with string keys."""
