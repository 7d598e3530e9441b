from __future__ import annotations

import copy
from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.contracts.errors import RecordInvalidError
from services.contracts.natural import codec_for
from tests.samples import minimal


@pytest.fixture
def arrival(catalog: Catalog) -> dict[str, Any]:
    record: dict[str, Any] = minimal(catalog.get("return_arrival"))
    return record


def convert(catalog: Catalog, natural: Any) -> Any:
    return codec_for(catalog.get("return_arrival")).to_datum(natural)


def failure(catalog: Catalog, natural: Any) -> RecordInvalidError:
    with pytest.raises(RecordInvalidError) as raised:
        convert(catalog, natural)
    return raised.value


def test_omitted_optional_fields_take_their_defaults(
    catalog: Catalog, arrival: Any
) -> None:
    datum = convert(catalog, arrival)
    assert datum["payload"]["person_identity"] is None
    assert datum["payload"]["accompaniment"] == "UNKNOWN"
    assert datum["payload"]["protection_flags"] == []


def test_natural_json_round_trips_through_the_datum(
    catalog: Catalog, arrival: Any
) -> None:
    arrival["payload"]["destination"]["municipality_code"] = "0623"
    arrival["payload"]["consent"]["given_at"] = "2026-11-02T08:00:00.000Z"
    entry = catalog.get("return_arrival")
    once = codec_for(entry).to_natural(convert(catalog, arrival))
    twice = codec_for(entry).to_natural(convert(catalog, once))
    assert once == twice
    assert once["payload"]["destination"]["municipality_code"] == "0623"
    assert once["payload"]["consent"]["given_at"] == "2026-11-02T08:00:00.000Z"


def test_a_timestamp_with_an_offset_is_normalised_to_utc(
    catalog: Catalog, arrival: Any
) -> None:
    arrival["envelope"]["occurred_at"] = "2026-11-02T08:00:00-06:00"
    natural = codec_for(catalog.get("return_arrival")).to_natural(
        convert(catalog, arrival)
    )
    assert natural["envelope"]["occurred_at"] == "2026-11-02T14:00:00.000Z"


def test_a_timestamp_without_an_offset_is_refused(catalog: Catalog, arrival: Any) -> None:
    arrival["envelope"]["occurred_at"] = "2026-11-02T08:00:00"
    error = failure(catalog, arrival)
    assert error.path == "envelope.occurred_at"
    assert "offset" in error.expected


@pytest.mark.parametrize(
    "moment", ["0001-01-01T00:00:00+00:01", "9999-12-31T23:59:00-01:00"]
)
@pytest.mark.parametrize("plain", [False, True])
def test_a_timestamp_outside_the_calendar_in_utc_is_refused_with_its_path(
    catalog: Catalog, arrival: Any, moment: str, plain: bool
) -> None:
    arrival["envelope"]["recorded_at"] = moment
    natural = codec_for(catalog.get("return_arrival"))
    with pytest.raises(RecordInvalidError) as caught:
        (natural.to_plain_datum if plain else natural.to_datum)(arrival)
    assert caught.value.path == "envelope.recorded_at"


def test_a_missing_required_field_is_named(catalog: Catalog, arrival: Any) -> None:
    del arrival["payload"]["person_profile"]["is_minor"]
    error = failure(catalog, arrival)
    assert error.path == "payload.person_profile.is_minor"
    assert "required" in error.expected


def test_an_unknown_field_is_refused_with_its_path(
    catalog: Catalog, arrival: Any
) -> None:
    arrival["payload"]["favourite_colour"] = "blue"
    assert failure(catalog, arrival).path == "payload.favourite_colour"


def test_an_unknown_enum_symbol_lists_the_expected_symbols(
    catalog: Catalog, arrival: Any
) -> None:
    arrival["payload"]["person_profile"]["sex"] = "F"
    error = failure(catalog, arrival)
    assert error.path == "payload.person_profile.sex"
    assert "FEMALE" in error.expected


def test_an_error_never_echoes_the_value(catalog: Catalog, arrival: Any) -> None:
    arrival["payload"]["person_identity"] = {"given_names": 42, "family_names": "Secreto"}
    error = failure(catalog, arrival)
    assert error.path == "payload.person_identity.given_names"
    assert "42" not in str(error)
    assert error.got == "integer"


def test_array_items_are_named_by_index(catalog: Catalog, arrival: Any) -> None:
    arrival["payload"]["protection_flags"] = ["UNACCOMPANIED_CHILD", "NOPE"]
    assert failure(catalog, arrival).path == "payload.protection_flags[1]"


@pytest.mark.parametrize(
    ("path", "value", "expected"),
    [
        (("envelope", "event_id"), "not-a-uuid", "UUID"),
        (("payload", "person_profile", "age_years"), 2**40, "32-bit"),
        (("payload", "person_profile", "age_years"), True, "32-bit"),
        (("payload", "person_profile", "is_minor"), "true", "true or false"),
        (("envelope", "retention_until"), "02/11/2026", "YYYY-MM-DD"),
        (("payload", "destination"), [], "object"),
        (("payload", "migration_reasons"), "ECONOMIC", "array"),
    ],
)
def test_each_wrong_type_is_explained(
    catalog: Catalog, arrival: Any, path: tuple[str, ...], value: Any, expected: str
) -> None:
    record = copy.deepcopy(arrival)
    target = record
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    error = failure(catalog, record)
    assert error.path == ".".join(path)
    assert expected in error.expected


def test_bytes_are_base64(catalog: Catalog) -> None:
    entry = catalog.get("rejection")
    natural = minimal(entry)
    natural["original_value"] = "w wE="
    with pytest.raises(RecordInvalidError, match="base64"):
        codec_for(entry).to_datum(natural)
    natural["original_value"] = "wwE="
    assert codec_for(entry).to_datum(natural)["original_value"] == b"\xc3\x01"
