"""Generated Avro readers: equal to fastavro on valid data, stricter on garbage."""

from __future__ import annotations

import io
from typing import Any

import fastavro
import pytest

from services.contracts.codec import READ_FAILURES, body_codec
from services.contracts.readers import Read, compile_reader
from tests.unit.contracts.trees import TREE, UNCOVERED, node


def _written(schema: Any, datum: Any) -> bytes:
    buffer = io.BytesIO()
    fastavro.schemaless_writer(buffer, schema, datum)
    return buffer.getvalue()


def _reader(schema: Any) -> Read:
    reader = compile_reader(fastavro.parse_schema(schema))
    assert reader is not None
    return reader


def test_a_recursive_record_reads_as_fastavro_reads_it_and_ends_at_its_last_byte() -> (
    None
):
    leaf = node(blob=None, tags={}, words=[])
    datum = node(children=[leaf, node(kind="A", children=[leaf])])
    data = b"\xaa" + _written(TREE, datum) + b"\xbb"  # read from inside a message
    reader = compile_reader(TREE)
    assert reader is not None
    value, end = reader(data, 1)
    assert value == fastavro.schemaless_reader(io.BytesIO(data[1:]), TREE, None)
    assert value == datum
    assert end == len(data) - 1


@pytest.mark.parametrize("kind", ["int", "long"])
@pytest.mark.parametrize("value", [0, 1, -1, 63, 64, -65, 2**31 - 1, -(2**31)])
def test_ints_and_longs_read_back(kind: str, value: int) -> None:
    data = _written(kind, value)
    assert _reader(kind)(data, 0) == (value, len(data))


@pytest.mark.parametrize("value", [-(2**63), 2**63 - 1])
def test_the_extreme_longs_read_back(value: int) -> None:
    assert _reader("long")(_written("long", value), 0)[0] == value


def test_arrays_written_in_negative_count_blocks_read_as_their_items() -> None:
    # A block with a negative count carries its size in bytes after the count.
    data = bytes([3, 4, 2, 4, 0])  # count -2, size 2 bytes, items 1 and 2, end
    assert _reader({"type": "array", "items": "long"})(data, 0) == ([1, 2], 5)


@pytest.mark.parametrize(
    ("schema", "data"),
    [
        ("boolean", b"\x02"),  # fastavro reads any non-zero byte as true
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, b"\x01"),  # index -1
        ({"type": "enum", "name": "E", "symbols": ["A", "B"]}, b"\x04"),  # index 2
        (["null", "string"], b"\x04"),  # branch 2 of 2
        (["null", "string"], b"\x01"),  # branch -1
        ("string", b"\x01"),  # length -1
        ("string", b"\x08ab"),  # 4 bytes announced, 2 there
        ("bytes", b"\x08ab"),
        ("string", b"\x04\xff\xfe"),  # not UTF-8
        ("long", b"\xff" * 11),  # longer than a 64-bit varint
        ("long", b"\x80"),  # ends inside a varint
        ("double", b"\x00\x00"),
        ({"type": "array", "items": "long"}, b"\x14\x02"),  # 10 items announced, 1 byte
        ({"type": "map", "values": "long"}, b"\x02"),  # a key missing
    ],
)
def test_garbage_is_one_of_the_read_failures(schema: Any, data: bytes) -> None:
    with pytest.raises(READ_FAILURES):
        _reader(schema)(data, 0)


def test_a_forged_deep_nesting_of_a_recursive_type_is_a_read_failure() -> None:
    # Each level: kind, again, size (8 bytes), count, flag, code, no words, ratio
    # (4 bytes), then no tags, blob null, note "" and one child; nested past the stack.
    level = bytes(2 + 8 + 4 + 4) + bytes([0, 2, 0, 2])
    with pytest.raises(READ_FAILURES):
        _reader(TREE)(level * 5000, 0)


@pytest.mark.parametrize(
    "schema",
    [
        *UNCOVERED,
        # Items of no bytes: a forged count could spin through them for ever.
        {"type": "array", "items": "null"},
        {"type": "array", "items": {"type": "record", "name": "Empty", "fields": []}},
        {
            "type": "record",
            "name": "Odd",
            "fields": [{"name": "x') or ('", "type": "string"}],
        },
    ],
)
def test_schemas_outside_the_covered_set_get_no_compiled_reader(schema: Any) -> None:
    assert compile_reader(fastavro.parse_schema(schema)) is None


def test_the_body_codec_falls_back_to_fastavro_and_still_says_where_it_ended() -> None:
    schema = fastavro.parse_schema({"type": "fixed", "name": "Four", "size": 4})
    data = b"\x00abcd\x00"
    assert body_codec(schema).read(data, 1) == (b"abcd", 5)
