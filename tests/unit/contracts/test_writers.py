"""Compiled Avro writers: what they cover, and that they fall back otherwise."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from services.contracts.writers import compile_writer
from tests.unit.contracts.trees import TREE, UNCOVERED, node


def _fastavro(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()


def test_a_recursive_record_with_maps_defaults_and_null_last_unions_matches() -> None:
    leaf = node(blob=None, tags={})
    del leaf["note"]  # written as its default, as fastavro does
    datum = node(children=[leaf, node(kind="A", children=[leaf])])
    writer = compile_writer(TREE)
    assert writer is not None
    assert writer(datum) == _fastavro(TREE, datum)


@pytest.mark.parametrize("kind", ["int", "long"])
@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**31)])
def test_ints_and_longs_are_zig_zag_varints_as_fastavro_writes_them(
    kind: str, value: int
) -> None:
    writer = compile_writer(fastavro.parse_schema(kind))
    assert writer is not None
    assert writer(value) == _fastavro(kind, value)


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1])
def test_the_extreme_longs_are_written_as_fastavro_writes_them(value: int) -> None:
    writer = compile_writer(fastavro.parse_schema("long"))
    assert writer is not None
    assert writer(value) == _fastavro("long", value)


def test_a_field_name_outside_the_avro_name_rule_gets_no_compiled_writer() -> None:
    # Field names are written into generated source: only checked names may be.
    schema = {
        "type": "record",
        "name": "Odd",
        "fields": [{"name": "x') or ('", "type": "string"}],
    }
    assert compile_writer(fastavro.parse_schema(schema)) is None


@pytest.mark.parametrize("schema", UNCOVERED)
def test_schemas_outside_the_covered_set_get_no_compiled_writer(schema: Any) -> None:
    assert compile_writer(fastavro.parse_schema(schema)) is None


def test_an_unknown_enum_symbol_raises_a_write_failure() -> None:
    writer = compile_writer(TREE)
    assert writer is not None
    with pytest.raises(KeyError):
        writer(node(kind="C"))
