"""Compiled Avro writers: what they cover, and that they fall back otherwise."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from services.contracts.writers import compile_writer

TREE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "sv.test.Node",
        "fields": [
            {
                "name": "kind",
                "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]},
            },
            {"name": "again", "type": "sv.test.Kind"},
            {"name": "size", "type": "double"},
            {"name": "ratio", "type": "float"},
            {"name": "tags", "type": {"type": "map", "values": "long"}},
            {"name": "blob", "type": ["bytes", "null"]},
            {"name": "note", "type": "string", "default": "none"},
            {"name": "children", "type": {"type": "array", "items": "sv.test.Node"}},
        ],
    }
)


def _fastavro(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()


def _node(**overrides: Any) -> dict[str, Any]:
    node: dict[str, Any] = {
        "kind": "B",
        "again": "A",
        "size": -2.5,
        "ratio": 0.25,
        "tags": {"x": -(2**40), "ñ": 63},
        "blob": b"\x00\xff",
        "note": "hola",
        "children": [],
    }
    return node | overrides


def test_a_recursive_record_with_maps_defaults_and_null_last_unions_matches() -> None:
    leaf = _node(blob=None, tags={})
    del leaf["note"]  # written as its default, as fastavro does
    datum = _node(children=[leaf, _node(kind="A", children=[leaf])])
    writer = compile_writer(TREE)
    assert writer is not None
    assert writer(datum) == _fastavro(TREE, datum)


@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**63), 2**63 - 1])
def test_longs_are_zig_zag_varints_as_fastavro_writes_them(value: int) -> None:
    writer = compile_writer(fastavro.parse_schema("long"))
    assert writer is not None
    assert writer(value) == _fastavro("long", value)


@pytest.mark.parametrize(
    "schema",
    [
        ["null", "string", "long"],
        ["string", "long"],
        {"type": "fixed", "name": "Four", "size": 4},
        {"type": "long", "logicalType": "timestamp-millis"},
    ],
)
def test_schemas_outside_the_covered_set_get_no_compiled_writer(schema: Any) -> None:
    assert compile_writer(fastavro.parse_schema(schema)) is None


def test_an_unknown_enum_symbol_raises_a_write_failure() -> None:
    writer = compile_writer(TREE)
    assert writer is not None
    with pytest.raises(KeyError):
        writer(_node(kind="C"))
