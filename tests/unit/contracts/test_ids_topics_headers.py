from __future__ import annotations

from datetime import UTC, datetime

import pytest

from services.contracts import headers, topics
from services.contracts.errors import HeaderError, InvalidIdError, InvalidTopicError
from services.contracts.ids import check_event_type, check_institution_id


@pytest.mark.parametrize("value", ["DGME", "1abc", "dgme-gami", "", "a" * 65, "dgme "])
def test_a_malformed_institution_id_is_refused(value: str) -> None:
    with pytest.raises(InvalidIdError):
        check_institution_id(value)


def test_lowercase_institution_ids_are_accepted() -> None:
    assert check_institution_id("rree_vmdmh") == "rree_vmdmh"


def test_an_unknown_event_type_is_refused_with_the_known_ones() -> None:
    with pytest.raises(InvalidIdError, match="return_arrival"):
        check_event_type("arrival")


def test_topic_names_follow_the_contract() -> None:
    assert topics.inbound("dgme", "return_arrival") == "hub.in.dgme.return_arrival"
    assert topics.outbound("conapina", "referral") == "hub.out.conapina.referral"
    assert topics.rejected("dgme") == "hub.rejected.dgme"


def test_topic_names_parse_back() -> None:
    ref = topics.parse("hub.in.mjsp_dnavmf.displacement_registration")
    assert (ref.kind, ref.institution, ref.event_type) == (
        "in",
        "mjsp_dnavmf",
        "displacement_registration",
    )
    assert topics.parse("hub.rejected.dgme").institution == "dgme"
    assert topics.parse("hub.audit").kind == "audit"


def test_a_foreign_topic_name_is_refused() -> None:
    with pytest.raises(InvalidTopicError):
        topics.parse("orders.v1")


def test_cloudevents_headers_round_trip() -> None:
    envelope = {
        "event_id": "7d9c7c1e-4b1a-4a53-9a3e-2b8e2a7f0c11",
        "source_institution_id": "dgme",
        "event_type": "return_arrival",
        "occurred_at": datetime(2026, 11, 2, 14, 5, tzinfo=UTC),
    }
    built = headers.build(headers.for_envelope(envelope))
    assert ("ce_specversion", b"1.0") in built
    assert ("content-type", b"application/avro") in built
    event = headers.parse(built)
    assert event.id == envelope["event_id"]
    assert (event.source, event.type) == ("dgme", "return_arrival")
    assert event.time == "2026-11-02T14:05:00.000Z"


def test_delivery_extensions_are_kept() -> None:
    event = headers.CloudEvent("1", "dgme", "referral", extensions={headers.VIEW: "FULL"})
    assert headers.parse(headers.build(event)).extensions == {"puente_view": "FULL"}


@pytest.mark.parametrize(
    "raw",
    [
        [("ce_id", b"1"), ("ce_source", b"dgme"), ("ce_type", b"referral")],
        [("ce_specversion", b"1.0"), ("ce_source", b"dgme"), ("ce_type", b"referral")],
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"\xff"),
            ("ce_source", b"d"),
            ("ce_type", b"r"),
        ],
    ],
)
def test_missing_or_broken_headers_raise_header_error(
    raw: list[tuple[str, bytes]],
) -> None:
    with pytest.raises(HeaderError):
        headers.parse(raw)
