"""One codec interface for record bodies: generated functions, fastavro the reference."""

from __future__ import annotations

from typing import Any

import fastavro
import pytest

from services.contracts.codec import FastavroBody, GeneratedBody, body_codec
from services.contracts.readers import compile_reader
from services.contracts.writers import compile_writer
from tests.unit.contracts.trees import TREE, UNCOVERED, node


def test_a_schema_the_generators_cover_is_read_and_written_by_them() -> None:
    codec = body_codec(TREE)
    reference = FastavroBody(TREE)
    datum = node(children=[node(words=["a", "bc"], blob=b"\x00\x01")])

    data = codec.write(datum)

    assert isinstance(codec, GeneratedBody)
    assert data == reference.write(datum)
    assert codec.read(b"\xff" + data, 1) == reference.read(b"\xff" + data, 1)
    assert codec.read(data, 0) == (datum, len(data))


@pytest.mark.parametrize("schema", UNCOVERED)
def test_a_schema_no_generator_covers_goes_to_the_fastavro_reference(
    schema: Any,
) -> None:
    codec = body_codec(fastavro.parse_schema(schema))

    assert isinstance(codec, FastavroBody)


def test_a_schema_only_the_writer_covers_is_read_by_fastavro_and_written_by_it() -> None:
    # Array items that may take no bytes: a forged count could spin a reader.
    parsed = fastavro.parse_schema({"type": "array", "items": "null"})
    codec = body_codec(parsed)

    data = codec.write([None, None, None])

    assert compile_reader(parsed) is None
    assert compile_writer(parsed) is not None
    assert isinstance(codec, GeneratedBody)
    assert data == FastavroBody(parsed).write([None, None, None])
    assert codec.read(data, 0) == ([None, None, None], len(data))
