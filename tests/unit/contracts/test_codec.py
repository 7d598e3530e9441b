from __future__ import annotations

import uuid
from datetime import UTC, date, datetime
from typing import Any

import pytest
from fastavro.schema import fingerprint

from services.contracts import codec
from services.contracts.catalog import Catalog, make_entry
from services.contracts.errors import (
    BadMagicError,
    BodyMismatchError,
    DecodeError,
    EmptyMessageError,
    RecordInvalidError,
    TruncatedMessageError,
    UnknownFingerprintError,
)
from services.contracts.natural import codec_for
from services.runtime.settings import REPO_ROOT
from tests.samples import minimal


def full_arrival(catalog: Catalog) -> Any:
    entry = catalog.get("return_arrival")
    natural = minimal(entry)
    natural["payload"]["person_identity"] = {
        "given_names": "Ana",
        "family_names": "Pérez",
        "birth_date": "2011-03-04",
        "documents": [{"document_type": "NUI", "document_number": "00000000-1"}],
    }
    natural["payload"]["person_profile"]["age_years"] = 15
    natural["payload"]["protection_flags"] = ["UNACCOMPANIED_CHILD"]
    natural["payload"]["consent"]["given_at"] = "2026-11-02T10:00:00.250-06:00"
    return codec_for(entry).to_datum(natural)


def test_a_record_with_logical_types_unions_and_nested_records_round_trips(
    catalog: Catalog,
) -> None:
    datum = full_arrival(catalog)
    data = codec.encode(catalog.get("return_arrival"), datum)
    entry, decoded = codec.decode(catalog, data)
    assert entry.name == "return_arrival"
    assert decoded == datum
    identity = decoded["payload"]["person_identity"]
    assert identity["birth_date"] == date(2011, 3, 4)
    assert isinstance(decoded["envelope"]["event_id"], uuid.UUID)
    given = decoded["payload"]["consent"]["given_at"]
    assert given == datetime(2026, 11, 2, 16, 0, 0, 250000, tzinfo=UTC)


def test_the_message_starts_with_the_single_object_header(catalog: Catalog) -> None:
    entry = catalog.get("return_arrival")
    data = codec.encode(entry, full_arrival(catalog))
    assert data[:2] == b"\xc3\x01"
    assert int.from_bytes(data[2:10], "little") == entry.fingerprint


def test_a_fingerprint_is_the_crc64_avro_of_the_canonical_form() -> None:
    # The Avro spec's test vector: the schema "int".
    assert fingerprint('"int"', "CRC-64-AVRO") == "8f5c393f1ad57572"


def test_fingerprints_are_stable_across_loads(catalog: Catalog) -> None:
    again = Catalog.load(REPO_ROOT / "schemas")
    for name in again.names:
        assert again.get(name).fingerprint == catalog.get(name).fingerprint


def test_an_empty_message_raises_empty_message(catalog: Catalog) -> None:
    with pytest.raises(EmptyMessageError):
        codec.decode(catalog, b"")


@pytest.mark.parametrize(
    "data", [b"{}", b"\x00\x01garbage-garbage", b"\xc3\x02" + bytes(20)]
)
def test_a_wrong_magic_raises_bad_magic(catalog: Catalog, data: bytes) -> None:
    with pytest.raises(BadMagicError):
        codec.decode(catalog, data)


@pytest.mark.parametrize("length", [1, 2, 5, 9])
def test_a_truncated_header_raises_truncated(catalog: Catalog, length: int) -> None:
    data = codec.encode(catalog.get("return_arrival"), full_arrival(catalog))
    with pytest.raises(TruncatedMessageError):
        codec.decode(catalog, data[:length])


def test_a_truncated_body_raises_a_decode_error(catalog: Catalog) -> None:
    data = codec.encode(catalog.get("return_arrival"), full_arrival(catalog))
    for cut in range(10, len(data) - 1, 7):
        with pytest.raises((TruncatedMessageError, BodyMismatchError)):
            codec.decode(catalog, data[:cut])


def test_an_unknown_fingerprint_raises_unknown_fingerprint(catalog: Catalog) -> None:
    with pytest.raises(UnknownFingerprintError) as raised:
        codec.decode(catalog, b"\xc3\x01" + bytes(8) + b"\x00")
    assert raised.value.reason == "unknown_schema"


def test_a_body_of_another_schema_raises_body_mismatch(catalog: Catalog) -> None:
    rejection = catalog.get("rejection")
    body = codec.encode(rejection, codec_for(rejection).to_datum(minimal(rejection)))[10:]
    forged = catalog.get("return_arrival").header + body
    with pytest.raises(DecodeError) as raised:
        codec.decode(catalog, forged)
    assert raised.value.reason == "undecodable"


def test_trailing_bytes_after_the_record_raise_body_mismatch(catalog: Catalog) -> None:
    data = codec.encode(catalog.get("return_arrival"), full_arrival(catalog))
    with pytest.raises(BodyMismatchError):
        codec.decode(catalog, data + b"\x00\x00")


def test_encoding_a_datum_that_breaks_the_schema_names_the_field(
    catalog: Catalog,
) -> None:
    datum = full_arrival(catalog)
    datum["payload"]["person_profile"]["is_minor"] = "yes"
    with pytest.raises(RecordInvalidError) as raised:
        codec.encode(catalog.get("return_arrival"), datum, check=True)
    assert "is_minor" in raised.value.path
    assert raised.value.got == "str"


def test_encoding_a_datum_missing_a_required_field_fails_with_its_path(
    catalog: Catalog,
) -> None:
    datum = full_arrival(catalog)
    del datum["payload"]["arrival_id"]
    with pytest.raises(RecordInvalidError) as raised:
        codec.encode(catalog.get("return_arrival"), datum)
    assert "arrival_id" in str(raised.value)


def test_decoding_with_a_reader_schema_applies_avro_resolution(catalog: Catalog) -> None:
    full = catalog.get("rejection")
    reader_schema = dict(full.schema)
    reader_schema["fields"] = [
        f for f in full.schema["fields"] if f["name"] in ("reason", "message")
    ]
    reader = make_entry("rejection.reader", 1, reader_schema)
    datum = codec_for(full).to_datum(minimal(full))
    projected = codec.decode_as(catalog, codec.encode(full, datum), reader)
    assert projected == {"reason": datum["reason"], "message": datum["message"]}
