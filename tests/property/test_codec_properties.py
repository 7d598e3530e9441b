"""Round trips of every schema: binary, plain (logical-type-free) and natural JSON."""

from __future__ import annotations

import contextlib
import io
from typing import Any

import fastavro
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts import codec, segments
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import DecodeError
from services.contracts.natural import codec_for
from services.contracts.readers import compile_reader
from services.contracts.writers import compile_writer
from services.runtime.settings import REPO_ROOT
from tests.strategies import datums

CATALOG = Catalog.load(REPO_ROOT / "schemas")
NAMES = CATALOG.names
EVENTS = [name for name in NAMES if CATALOG.get(name).is_event]
SPLIT = {name: segments.split(CATALOG.get(name)) for name in EVENTS}
FAST = settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_decode_of_encode_is_the_record(name: str, data: st.DataObject) -> None:
    entry = CATALOG.get(name)
    datum = data.draw(datums(entry.schema))
    decoded_entry, decoded = codec.decode(CATALOG, codec.encode(entry, datum))
    assert decoded_entry is entry
    assert decoded == datum


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_plain_and_logical_encodings_are_the_same_bytes(
    name: str, data: st.DataObject
) -> None:
    entry = CATALOG.get(name)
    data_bytes, plain = _encoded_and_plain(entry, data)
    assert codec.encode(entry, plain, plain=True) == data_bytes


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_natural_json_round_trips(name: str, data: st.DataObject) -> None:
    entry = CATALOG.get(name)
    datum = data.draw(datums(entry.schema))
    natural: Any = codec_for(entry).to_natural(datum)
    assert codec_for(entry).to_datum(natural) == datum


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data(), upper=st.booleans())
def test_natural_json_to_plain_datums_encodes_to_the_same_bytes(
    name: str, data: st.DataObject, upper: bool
) -> None:
    entry = CATALOG.get(name)
    natural: Any = codec_for(entry).to_natural(data.draw(datums(entry.schema)))
    if upper:  # uuids in another accepted spelling
        natural = _upper_uuids(natural)
    logical = codec.encode(entry, codec_for(entry).to_datum(natural))
    plain = codec.encode(entry, codec_for(entry).to_plain_datum(natural), plain=True)
    assert plain == logical


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_compiled_writers_write_the_bytes_fastavro_writes(
    name: str, data: st.DataObject
) -> None:
    entry = CATALOG.get(name)
    data_bytes, plain = _encoded_and_plain(entry, data)
    writer = compile_writer(entry.plain)
    assert writer is not None  # every shipped schema is covered
    assert entry.header + writer(plain) == data_bytes


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_compiled_readers_read_what_fastavro_reads(
    name: str, data: st.DataObject
) -> None:
    entry = CATALOG.get(name)
    data_bytes, plain = _encoded_and_plain(entry, data)
    reader = compile_reader(entry.plain)
    assert reader is not None  # every shipped schema is covered
    assert reader(data_bytes, codec.HEADER_SIZE) == (plain, len(data_bytes))


@pytest.mark.parametrize("name", EVENTS)
@FAST
@given(data=st.data())
def test_an_event_read_in_segments_is_the_record_and_its_payload_bytes_are_cut_out(
    name: str, data: st.DataObject
) -> None:
    entry = CATALOG.get(name)
    data_bytes, plain = _encoded_and_plain(entry, data)
    datum, starts = segments.read(SPLIT[name], data_bytes)
    assert datum == plain
    payload = io.BytesIO(data_bytes[starts[1] : starts[2]])
    assert (
        fastavro.schemaless_reader(payload, SPLIT[name].parsed[1], None)
        == datum["payload"]
    )


def _encoded_and_plain(entry: SchemaEntry, data: st.DataObject) -> tuple[bytes, Any]:
    """A drawn record's single-object bytes, and the plain datum they decode to."""
    data_bytes = codec.encode(entry, data.draw(datums(entry.schema)))
    _, plain = codec.decode(CATALOG, data_bytes, plain=True)
    return data_bytes, plain


def _upper_uuids(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _upper_uuids(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_upper_uuids(v) for v in value]
    if isinstance(value, str) and len(value) == 36 and value.count("-") == 4:
        return value.upper()
    return value


@pytest.mark.parametrize("name", EVENTS)
@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_a_damaged_event_is_refused_or_read_exactly_as_fastavro_reads_it(
    name: str, data: st.DataObject
) -> None:
    # Damage deep inside a valid record reaches the reader's later fields, where
    # random bytes after the header rarely get. The router's reader is stricter than
    # fastavro, never looser: whatever it reads, fastavro reads the same.
    entry = CATALOG.get(name)
    data_bytes, _ = _encoded_and_plain(entry, data)
    at = data.draw(st.integers(codec.HEADER_SIZE, len(data_bytes) - 1))
    damage = data.draw(st.sampled_from(["flip", "cut", "insert"]))
    if damage == "flip":
        flipped = data_bytes[at] ^ data.draw(st.integers(1, 255))
        damaged = data_bytes[:at] + bytes([flipped]) + data_bytes[at + 1 :]
    elif damage == "cut":
        damaged = data_bytes[:at]
    else:
        damaged = data_bytes[:at] + data.draw(st.binary(min_size=1, max_size=8))
        damaged += data_bytes[at:]
    try:
        datum, _ = segments.read(SPLIT[name], damaged)
    except DecodeError:
        return
    assert datum == codec.read_body(entry, damaged, plain=True)


@settings(max_examples=300, deadline=None)
@given(garbage=st.binary(max_size=400), name=st.sampled_from(NAMES))
def test_garbage_after_a_valid_header_raises_only_decode_errors(
    garbage: bytes, name: str
) -> None:
    # Anything but a DecodeError (an IndexError, a MemoryError...) fails the test.
    entry = CATALOG.get(name)
    with contextlib.suppress(DecodeError):
        codec.decode(CATALOG, entry.header + garbage)
    if name in EVENTS:  # the router's reader, in segments
        with contextlib.suppress(DecodeError):
            segments.read(SPLIT[name], entry.header + garbage)


@pytest.mark.parametrize("name", NAMES)
@FAST
@given(data=st.data())
def test_the_body_codec_of_every_schema_agrees_with_the_fastavro_reference(
    name: str, data: st.DataObject
) -> None:
    entry = CATALOG.get(name)
    data_bytes, plain = _encoded_and_plain(entry, data)
    fast, reference = codec.body_codec(entry.plain), codec.FastavroBody(entry.plain)
    assert fast.write(plain) == reference.write(plain) == data_bytes[codec.HEADER_SIZE :]
    assert fast.read(data_bytes, codec.HEADER_SIZE) == reference.read(
        data_bytes, codec.HEADER_SIZE
    )
