"""Avro writers for plain datums, generated once per parsed schema (pure, no I/O).

fastavro's writer looks at the schema again at every value it writes (and tries
each branch of a union); for the router's hot path that was half of its encoding
time. `compile_writer` writes one Python function per record type with each
field's encoding in line (`contracts.generated`). It covers what the hub's schemas
use (records, enums, arrays, maps, primitives, ``["null", T]`` unions) and returns
None for anything else; `codec.body_codec` then uses fastavro. Tests hold its bytes
equal to fastavro's for every schema.
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

Encode = Callable[[Any], bytes]

_ONE_BYTE: Final = 63  # the largest count whose zig-zag varint is one byte


def write_long(value: int, out: bytearray) -> None:
    """Append ``value`` as an Avro int/long: zig-zag, then a base-128 varint."""
    n = (value << 1) ^ (value >> 63)
    while n > 0x7F:
        out.append((n & 0x7F) | 0x80)
        n >>= 7
    out.append(n)


_HELPERS: Final[dict[str, Any]] = {
    "long_": write_long,
    "double_": struct.Struct("<d").pack,
    "float_": struct.Struct("<f").pack,
    "len": len,
}


def compile_writer(parsed: Any) -> Encode | None:
    """An encoder equal to fastavro's non-strict ``schemaless_writer`` for ``parsed``.

    ``parsed`` is a ``fastavro.parse_schema`` result without logical types. None
    when the schema uses something not covered here.
    """
    source = Source("write_")
    try:
        top = _Writer(source, named_of(parsed)).top_function(parsed)
        write = source.compile(top, _HELPERS)
    except UnsupportedError:
        return None

    def encode(datum: Any) -> bytes:
        out = bytearray()
        write(datum, out)
        return bytes(out)

    return encode


class _Writer(Emitter):
    """Writes the statements that append one value's encoding to ``out``."""

    def top_function(self, schema: Any) -> str:
        """The name of the function ``(datum, out)`` that writes ``schema``."""
        if isinstance(schema, dict) and schema.get("type") in ("record", "error"):
            return self.record(schema)
        function, _ = self.source.function("")  # "" is no record's name
        body = self.value(schema, "datum", 1)
        self.source.lines.extend([f"def {function}(datum, out):", *body])
        return function

    def record_call(self, function: str, value: str) -> str:
        return f"{function}({value}, out)"

    def named_type(self, name: str, value: str, depth: int) -> list[str]:
        pad = INDENT * depth
        if name in _PRIMITIVE_LINES:
            return [pad + line.format(v=value) for line in _PRIMITIVE_LINES[name]]
        if name == "string":
            data = self.source.local()
            return [
                f"{pad}{data} = {value}.encode()",
                *_length(data, pad),
                f"{pad}out += {data}",
            ]
        if name not in self.named:
            raise UnsupportedError(name)
        return self.value(self.named[name], value, depth)

    def union(self, branches: list[Any], value: str, depth: int) -> list[str]:
        inner, null_index, value_index = nullable(branches)
        pad = INDENT * depth
        return [
            f"{pad}if {value} is None: out.append({null_index})",
            f"{pad}else:",
            f"{pad}{INDENT}out.append({value_index})",
            *self.value(inner, value, depth + 1),
        ]

    def record(self, schema: dict[str, Any]) -> str:
        function, new = self.source.function(schema["name"])
        if not new:
            return function
        body = [f"def {function}(datum, out):", f"{INDENT}get = datum.get"]
        for spec in schema["fields"]:
            value = self.source.local()
            name = field_name(spec)
            if "default" in spec:
                default = self.source.constant(spec["default"])
                body.append(f"{INDENT}{value} = get({name!r}, {default})")
            else:  # missing: None, which fails where null is not allowed, as fastavro
                body.append(f"{INDENT}{value} = get({name!r})")
            body.extend(self.value(spec["type"], value, 1))
        self.source.lines.extend(body)
        return function

    def enum(self, schema: dict[str, Any], value: str, depth: int) -> list[str]:
        # An unknown symbol is a KeyError, a write failure like fastavro's ValueError.
        symbols = schema["symbols"]
        pad = INDENT * depth
        if len(symbols) <= _ONE_BYTE:  # the common case: the index is one byte
            index = self.source.constant({s: i << 1 for i, s in enumerate(symbols)})
            return [f"{pad}out.append({index}[{value}])"]
        index = self.source.constant({s: i for i, s in enumerate(symbols)})
        return [f"{pad}long_({index}[{value}], out)"]

    def array(self, schema: dict[str, Any], value: str, depth: int) -> list[str]:
        item = self.source.local()
        pad = INDENT * depth
        return [
            f"{pad}if {value}:",
            *_length(value, pad + INDENT),
            f"{pad}{INDENT}for {item} in {value}:",
            *self.value(schema["items"], item, depth + 2),
            f"{pad}out.append(0)",
        ]

    def map(self, schema: dict[str, Any], value: str, depth: int) -> list[str]:
        key, item = self.source.local(), self.source.local()
        pad = INDENT * depth
        return [
            f"{pad}if {value}:",
            *_length(value, pad + INDENT),
            f"{pad}{INDENT}for {key}, {item} in {value}.items():",
            *self.named_type("string", key, depth + 2),
            *self.value(schema["values"], item, depth + 2),
            f"{pad}out.append(0)",
        ]


def _length(value: str, pad: str) -> list[str]:
    """Append ``len(value)``: most lengths are one byte, written without a call."""
    return [
        f"{pad}if len({value}) <= {_ONE_BYTE}: out.append(len({value}) << 1)",
        f"{pad}else: long_(len({value}), out)",
    ]


# Statements per primitive other than string; "{v}" is the value's local name.
_PRIMITIVE_LINES: Final[dict[str, tuple[str, ...]]] = {
    "null": ("pass",),
    "boolean": ("out.append(1 if {v} else 0)",),
    # ints are mostly small counts and ages: one byte, without a call
    "int": (
        f"if 0 <= {{v}} <= {_ONE_BYTE}: out.append({{v}} << 1)",
        "else: long_({v}, out)",
    ),
    "long": ("long_({v}, out)",),
    "float": ("out += float_({v})",),
    "double": ("out += double_({v})",),
    "bytes": ("long_(len({v}), out)", "out += {v}"),
}
