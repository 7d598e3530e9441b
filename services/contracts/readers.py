"""Avro readers for plain datums, generated once per parsed schema (pure, no I/O).

The counterpart of `contracts.writers`: `compile_reader` writes one Python function
per record type that reads each field in line from the message bytes, about twice
as fast as fastavro's schemaless reader on the hub's events. A reader returns the
value and the position after it, so `contracts.segments` can cut fields out.

It is stricter than fastavro where fastavro reads garbage as data: a boolean byte
other than 0 or 1, a negative enum or union index, a negative length or a varint
longer than ten bytes are errors. Every failure is one of `codec.READ_FAILURES`.
Arrays and maps must say how many items they hold before the bytes run out, and
schemas whose array items could take no bytes at all are not generated (a forged
count could then spin for ever); `codec.body_codec` reads those with fastavro.
"""

from __future__ import annotations

import struct
from collections.abc import Callable
from typing import Any, Final

from services.contracts.generated import (
    INDENT,
    Emitter,
    Source,
    UnsupportedError,
    field_name,
    named_of,
    nullable,
)

# (data, position) -> (value, position after it)
Read = Callable[[bytes, int], tuple[Any, int]]
_MAX_VARINT_SHIFT: Final = 63  # ten bytes hold a 64-bit long


def compile_reader(parsed: Any) -> Read | None:
    """A reader equal to fastavro's ``schemaless_reader`` for valid data of ``parsed``.

    ``parsed`` is a ``fastavro.parse_schema`` result without logical types. None
    when the schema uses something not covered here.
    """
    source = Source("read_")
    try:
        top = _Reader(source, named_of(parsed)).top_function(parsed)
        read: Read = source.compile(top, _HELPERS)
    except UnsupportedError:
        return None
    return read


def read_varint(data: bytes, position: int, first: int) -> tuple[int, int]:
    """Finish a varint whose first byte, ``first``, had its high bit set."""
    value = first & 0x7F
    shift = 7
    while True:
        byte = data[position]
        position += 1
        value |= (byte & 0x7F) << shift
        if byte < 0x80:
            if value >> 64:
                # A tenth byte can carry bits past 64 that other readers drop
                # silently; a long never has them, so the record is damaged.
                raise ValueError("a varint wider than 64 bits")
            return value, position
        shift += 7
        if shift > _MAX_VARINT_SHIFT:
            raise ValueError("a varint longer than ten bytes")


_HELPERS: Final = {
    "varint_": read_varint,
    "double_": struct.Struct("<d").unpack_from,
    "float_": struct.Struct("<f").unpack_from,
    "len": len,
    "range": range,
    "ValueError": ValueError,
    "EOFError": EOFError,
}


class _Reader(Emitter):
    """Writes the statements that read one value into a local and advance ``p``.

    The generated functions take ``(b, p)``: the bytes and the position; ``m`` is
    their length.
    """

    def top_function(self, schema: Any) -> str:
        """The name of the function ``(b, p) -> (value, p)`` reading ``schema``."""
        if isinstance(schema, dict) and schema.get("type") in ("record", "error"):
            record = self.record(schema)
            function, _ = self.source.function("")  # "" is no record's name
            body = [f"{INDENT}return {record}(b, p, len(b))"]
        else:
            function, _ = self.source.function("")
            value = self.source.local()
            body = [
                f"{INDENT}m = len(b)",
                *self.value(schema, value, 1),
                f"{INDENT}return {value}, p",
            ]
        self.source.lines.extend([f"def {function}(b, p):", *body])
        return function

    def record_call(self, function: str, target: str) -> str:
        return f"{target}, p = {function}(b, p, m)"

    def _varint(self, target: str, depth: int) -> list[str]:
        """Read a raw (still zig-zagged) varint; most are one byte."""
        pad = INDENT * depth
        return [
            f"{pad}{target} = b[p]",
            f"{pad}p += 1",
            f"{pad}if {target} > 0x7F: {target}, p = varint_(b, p, {target})",
        ]

    def named_type(self, name: str, target: str, depth: int) -> list[str]:
        pad = INDENT * depth
        if name in ("int", "long"):
            return [
                *self._varint(target, depth),
                f"{pad}{target} = ({target} >> 1) ^ -({target} & 1)",
            ]
        if name in ("string", "bytes"):
            end = self.source.local()
            decode = ".decode()" if name == "string" else ""
            return [
                *self._varint(end, depth),
                f"{pad}if {end} & 1: raise ValueError('a negative length')",
                f"{pad}{end} = p + ({end} >> 1)",
                f"{pad}if {end} > m: raise EOFError",
                f"{pad}{target} = b[p:{end}]{decode}",
                f"{pad}p = {end}",
            ]
        if name in _FIXED_SIZE_LINES:
            return [pad + line.format(v=target) for line in _FIXED_SIZE_LINES[name]]
        if name not in self.named:
            raise UnsupportedError(name)
        return self.value(self.named[name], target, depth)

    def union(self, branches: list[Any], target: str, depth: int) -> list[str]:
        inner, null_index, value_index = nullable(branches)
        index = self.source.local()
        pad = INDENT * depth
        return [
            *self._varint(index, depth),
            f"{pad}if {index} == {null_index}: {target} = None",
            f"{pad}elif {index} == {value_index}:",
            *self.value(inner, target, depth + 1),
            f"{pad}else: raise ValueError('a union index out of range')",
        ]

    def record(self, schema: dict[str, Any]) -> str:
        function, new = self.source.function(schema["name"])
        if not new:
            return function
        body = [f"def {function}(b, p, m):"]
        items = []
        for spec in schema["fields"]:
            value = self.source.local()
            items.append(f"{field_name(spec)!r}: {value}")
            body.extend(self.value(spec["type"], value, 1))
        body.append(f"{INDENT}return {{{', '.join(items)}}}, p")
        self.source.lines.extend(body)
        return function

    def enum(self, schema: dict[str, Any], target: str, depth: int) -> list[str]:
        symbols = self.source.constant(tuple(schema["symbols"]))
        pad = INDENT * depth
        return [
            *self._varint(target, depth),
            f"{pad}if {target} & 1: raise ValueError('a negative enum index')",
            f"{pad}{target} = {symbols}[{target} >> 1]",  # past the end: IndexError
        ]

    def array(self, schema: dict[str, Any], target: str, depth: int) -> list[str]:
        if not self._takes_bytes(schema["items"], set()):
            raise UnsupportedError("array items that may take no bytes")
        item = self.source.local()
        return self._blocks(
            target,
            "[]",
            [
                *self.value(schema["items"], item, depth + 2),
                f"{INDENT * (depth + 2)}{target}.append({item})",
            ],
            depth,
        )

    def map(self, schema: dict[str, Any], target: str, depth: int) -> list[str]:
        key, item = self.source.local(), self.source.local()
        return self._blocks(
            target,
            "{}",
            [
                *self.named_type("string", key, depth + 2),
                *self.value(schema["values"], item, depth + 2),
                f"{INDENT * (depth + 2)}{target}[{key}] = {item}",
            ],
            depth,
        )

    def _blocks(self, target: str, empty: str, item: list[str], depth: int) -> list[str]:
        """Avro's blocks: a count (negative: followed by the block's size), items."""
        count, size = self.source.local(), self.source.local()
        pad, inner = INDENT * depth, INDENT * (depth + 1)
        return [
            f"{pad}{target} = {empty}",
            f"{pad}while True:",
            *self._varint(count, depth + 1),
            f"{inner}if not {count}: break",
            f"{inner}if {count} & 1:",
            *self._varint(size, depth + 2),
            f"{inner}{INDENT}{count} += 1",  # zig-zag of -n is 2n - 1
            f"{inner}{count} >>= 1",
            # Every item takes a byte at least: a larger count is a forgery.
            f"{inner}if {count} > m - p: raise EOFError",
            f"{inner}for _ in range({count}):",
            *item,
        ]

    def _takes_bytes(self, schema: Any, seen: set[str]) -> bool:
        """Whether every value of ``schema`` takes at least one byte."""
        if isinstance(schema, str):
            if schema == "null":
                return False
            if schema not in self.named or schema in seen:
                return True  # a primitive; a record already being looked at
            return self._takes_bytes(self.named[schema], seen | {schema})
        if isinstance(schema, list):
            return True  # the branch index
        if schema.get("type") in ("record", "error"):
            seen = seen | {schema["name"]}
            return any(self._takes_bytes(f["type"], seen) for f in schema["fields"])
        if schema.get("type") in ("array", "map", "enum"):
            return True
        return self._takes_bytes(schema["type"], seen)


# Reads of the fixed-size primitives; "{v}" is the target's local name.
_FIXED_SIZE_LINES: Final[dict[str, tuple[str, ...]]] = {
    "null": ("{v} = None",),
    "boolean": (
        "{v} = b[p]",
        "p += 1",
        "if {v} > 1: raise ValueError('a boolean byte other than 0 or 1')",
        "{v} = {v} == 1",
    ),
    "float": ("{v}, = float_(b, p)", "p += 4"),
    "double": ("{v}, = double_(b, p)", "p += 8"),
}
