"""GET deliveries and rejections (with a fake reader) and the generated OpenAPI."""

from __future__ import annotations

import uuid
from datetime import UTC, datetime
from typing import Any

import httpx
from aiokafka import ConsumerRecord

from services.contracts import codec, headers
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.contracts.samples import minimal_event
from services.gateway.deliveries import decode_cursor, encode_cursor
from services.gateway.handlers import Gateway
from tests.unit.gateway.conftest import FakeReader


def record(topic: str, partition: int, offset: int, value: bytes, hdrs: Any = ()) -> Any:
    return ConsumerRecord(
        topic, partition, offset, 0, 0, None, value, None, 0, len(value), tuple(hdrs)
    )


def delivery(catalog: Catalog, partition: int, offset: int) -> Any:
    entry = catalog.get("return_arrival")
    natural = minimal_event(entry, "dgme")
    datum = codec_for(entry).to_datum(natural)
    hdrs = headers.build(headers.for_envelope(datum["envelope"]))
    hdrs.append(("puente_view", b"PSEUDO"))
    value = codec.encode(entry, datum)
    expected = codec_for(entry).to_natural(datum)
    return record("hub.out.dgme.return_arrival", partition, offset, value, hdrs), expected


async def test_deliveries_come_back_as_natural_json_with_a_cursor_that_continues(
    client: httpx.AsyncClient, gateway: Gateway, reader: FakeReader, catalog: Catalog
) -> None:
    made = [delivery(catalog, p, o) for p, o in [(0, 0), (0, 1), (1, 0)]]
    reader.records["hub.out.dgme.return_arrival"] = [r for r, _ in made]

    first = (
        await client.get("/v1/deliveries/return_arrival", params={"limit": 2})
    ).json()
    rest = (
        await client.get(
            "/v1/deliveries/return_arrival", params={"cursor": first["cursor"]}
        )
    ).json()

    assert first["count"] == 2
    assert first["items"][0]["event"] == made[0][1]
    assert first["items"][0]["view"] == "PSEUDO"
    assert first["items"][0]["event_id"] == made[0][1]["envelope"]["event_id"]
    assert decode_cursor(first["cursor"]) == {0: 2}
    assert [i["event"] for i in rest["items"]] == [made[2][1]]
    assert decode_cursor(rest["cursor"]) == {0: 2, 1: 1}


async def test_deliveries_are_read_from_the_callers_own_topic_only(
    client: httpx.AsyncClient, reader: FakeReader
) -> None:
    await client.get("/v1/deliveries/referral")

    assert reader.calls[-1][0] == "hub.out.dgme.referral"


async def test_an_undecodable_delivery_is_reported_in_place_not_as_a_5xx(
    client: httpx.AsyncClient, reader: FakeReader
) -> None:
    reader.records["hub.out.dgme.referral"] = [
        record("hub.out.dgme.referral", 0, 0, b"\xc3\x01garbage!")
    ]

    response = await client.get("/v1/deliveries/referral")

    assert response.status_code == 200
    assert response.json()["items"][0]["error"]["reason"] == "unknown_schema"


async def test_a_tampered_cursor_is_a_400_problem(client: httpx.AsyncClient) -> None:
    for cursor in ["%%%", encode_cursor({0: 1})[:-3] + "xyz", "W10"]:
        response = await client.get("/v1/deliveries/referral", params={"cursor": cursor})
        assert response.status_code == 400, cursor
        assert response.headers["content-type"] == "application/problem+json"


async def test_deliveries_of_an_unknown_event_type_are_a_404(
    client: httpx.AsyncClient,
) -> None:
    assert (await client.get("/v1/deliveries/nothing")).status_code == 404


async def test_a_limit_out_of_range_is_a_400_problem(client: httpx.AsyncClient) -> None:
    response = await client.get("/v1/deliveries/referral", params={"limit": 0})

    assert response.status_code == 400
    assert response.json()["field"] == "query.limit"


def rejection(catalog: Catalog, original: bytes) -> bytes:
    entry = catalog.get("rejection")
    now = datetime.now(UTC)
    datum = {
        "rejection_id": uuid.uuid4(),
        "reason": "invalid",
        "message": "payload.x: expected a string",
        "source_institution_id": "dgme",
        "event_id": "e-1",
        "event_type": "return_arrival",
        "original_topic": "hub.in.dgme.return_arrival",
        "original_partition": 0,
        "original_offset": 7,
        "received_at": now,
        "rejected_at": now,
        "original_value": original,
    }
    return codec.encode(entry, datum)


async def test_rejections_show_reason_and_message_but_the_original_only_on_request(
    client: httpx.AsyncClient, gateway: Gateway, reader: FakeReader, catalog: Catalog
) -> None:
    value = rejection(catalog, b"\x01\x02")
    reader.records["hub.rejected.dgme"] = [record("hub.rejected.dgme", 0, 0, value)]

    plain = (await client.get("/v1/rejections")).json()["items"][0]
    full = (await client.get("/v1/rejections", params={"include_original": True})).json()

    assert plain["reason"] == "invalid"
    assert plain["message"] == "payload.x: expected a string"
    assert plain["original_offset"] == 7
    assert "original_value" not in plain
    assert full["items"][0]["original_value"] == "AQI="


async def test_openapi_shows_every_field_enum_symbol_and_sensitivity_of_each_event_type(
    admin: httpx.AsyncClient, catalog: Catalog
) -> None:
    document = (await admin.get("/openapi.json")).json()
    schemas = document["components"]["schemas"]

    envelope = schemas["EventEnvelope"]["properties"]
    assert envelope["event_id"]["x-sensitivity"] == "INTERNAL"
    assert "INTERNAL" in envelope["event_id"]["description"]
    identity = schemas["ReturnArrival"]["properties"]["person_identity"]
    assert identity["x-sensitivity"] == "DIRECT_IDENTIFIER"
    assert schemas["TransportMode"]["enum"] == ["AIR", "LAND", "SEA"]
    for event_type in [
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    ]:
        operation = document["paths"][f"/v1/events/{event_type}"]["post"]
        ref = operation["requestBody"]["content"]["application/json"]["schema"]["$ref"]
        model = schemas[ref.rsplit("/", 1)[1]]
        fields = {f["name"] for f in catalog.get(event_type).schema["fields"]}
        assert set(model["properties"]) == fields
    assert "/v1/events:batch" in document["paths"]
    assert "HTTPBearer" in document["components"]["securitySchemes"]


async def test_docs_page_is_served_on_the_admin_app(admin: httpx.AsyncClient) -> None:
    response = await admin.get("/docs")

    assert response.status_code == 200
    assert "/openapi.json" in response.text


DISCLOSURE = [
    ("puente_view", b"PSEUDO"),
    ("puente_purpose", b"HUMANITARIAN_ASSISTANCE"),
    ("puente_legal_basis", b"CONSENT"),
    ("puente_policy_version", b"2026.12.1"),
    # A router older than the delivery header contract still sends its rule id.
    ("puente_rule", b"minor-refused-migration-restriction"),
]


async def test_a_delivery_names_view_purpose_legal_basis_and_policy_but_never_a_rule(
    client: httpx.AsyncClient, reader: FakeReader, catalog: Catalog
) -> None:
    made, _ = delivery(catalog, 0, 0)
    hdrs = [h for h in made.headers if h[0] != "puente_view"] + DISCLOSURE
    reader.records["hub.out.dgme.return_arrival"] = [
        record("hub.out.dgme.return_arrival", 0, 0, made.value, hdrs)
    ]

    response = await client.get("/v1/deliveries/return_arrival")

    (item,) = response.json()["items"]
    assert item["view"] == "PSEUDO"
    assert item["purpose"] == "HUMANITARIAN_ASSISTANCE"
    assert item["legal_basis"] == "CONSENT"
    assert item["policy_version"] == "2026.12.1"
    assert "rule" not in item
    assert "minor-refused-migration-restriction" not in response.text


async def test_openapi_describes_delivery_items_with_the_disclosure_terms_and_no_rule(
    admin: httpx.AsyncClient,
) -> None:
    document = (await admin.get("/openapi.json")).json()
    operation = document["paths"]["/v1/deliveries/{event_type}"]["get"]
    page = operation["responses"]["200"]["content"]["application/json"]["schema"]
    schemas = document["components"]["schemas"]

    assert page["$ref"].endswith("/DeliveryPage")
    item = schemas["DeliveryItem"]["properties"]
    assert {"view", "purpose", "legal_basis", "policy_version", "event"} <= set(item)
    assert "rule" not in item
    assert "schema" in item
