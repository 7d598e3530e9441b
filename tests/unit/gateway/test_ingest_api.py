"""POST /v1/events/{type} and /v1/events:batch: acceptance, idempotency, refusals."""

from __future__ import annotations

import copy
import uuid
from typing import Any

import httpx
import pytest

from services.contracts import codec, headers
from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway.handlers import Gateway
from services.gateway.tokens import TokenStore

PROBLEM = "application/problem+json"
URL = "/v1/events/return_arrival"


def problem(response: httpx.Response, status: int) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == PROBLEM
    body: dict[str, Any] = response.json()
    assert body["status"] == status
    assert body["type"].startswith("urn:puente:problem:")
    return body


async def test_a_valid_event_is_answered_202_with_its_id_once_it_is_in_the_outbox(
    client: httpx.AsyncClient, gateway: Gateway, event: Any, catalog: Catalog
) -> None:
    response = await client.post(URL, json=event)

    assert response.status_code == 202
    assert response.json()["event_id"] == event["envelope"]["event_id"]
    (row,) = await gateway.outbox.unsent(10)
    assert row.topic == "hub.in.dgme.return_arrival"
    entry, datum = codec.decode(catalog, row.value)
    assert entry.name == "return_arrival"
    assert str(datum["envelope"]["event_id"]) == event["envelope"]["event_id"]
    assert headers.parse(row.headers).id == event["envelope"]["event_id"]
    assert row.key == event["envelope"]["event_id"].encode()


async def test_the_same_event_again_answers_200_with_the_original_result(
    client: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    first = await client.post(URL, json=event)
    again = await client.post(URL, json=event)

    assert again.status_code == 200
    assert again.json() == first.json()
    assert gateway.outbox.unsent_count == 1


async def test_the_same_event_id_with_other_content_answers_409(
    client: httpx.AsyncClient, event: Any
) -> None:
    await client.post(URL, json=event)
    changed = copy.deepcopy(event)
    changed["payload"]["arrival_id"] = "another"

    body = problem(await client.post(URL, json=changed), 409)

    assert body["event_id"] == event["envelope"]["event_id"]
    assert body["reason"] == "conflicting_duplicate"


async def test_a_referral_is_keyed_by_its_referral_id(
    client: httpx.AsyncClient, gateway: Gateway, catalog: Catalog
) -> None:
    referral = minimal_event(catalog.get("referral"), "dgme")
    referral_id = str(uuid.uuid4())
    referral["payload"]["referral_id"] = referral_id

    assert (await client.post("/v1/events/referral", json=referral)).status_code == 202

    (row,) = await gateway.outbox.unsent(10)
    assert row.key == referral_id.encode()


async def test_malformed_json_is_a_400_problem(client: httpx.AsyncClient) -> None:
    body = problem(
        await client.post(
            URL, content=b'{"envelope": ', headers={"content-type": "application/json"}
        ),
        400,
    )
    assert "not JSON" in body["detail"]


async def test_an_unknown_event_type_is_a_404_problem(
    client: httpx.AsyncClient, event: Any
) -> None:
    body = problem(await client.post("/v1/events/asylum_claim", json=event), 404)
    assert "return_arrival" in body["detail"]


async def test_a_schema_violation_names_the_field_path_and_what_was_expected(
    client: httpx.AsyncClient, event: Any
) -> None:
    event["payload"]["arrival_mode"] = "TELEPORT"

    body = problem(await client.post(URL, json=event), 422)

    assert body["field"] == "payload.arrival_mode"
    assert body["expected"] == "one of AIR, LAND, SEA"
    assert "TELEPORT" not in response_text(body)


def response_text(body: dict[str, Any]) -> str:
    return str(body)


async def test_a_missing_required_field_is_a_422_naming_it(
    client: httpx.AsyncClient, event: Any
) -> None:
    del event["envelope"]["occurred_at"]

    body = problem(await client.post(URL, json=event), 422)

    assert body["field"] == "envelope.occurred_at"


async def test_an_envelope_event_type_other_than_the_path_is_a_422(
    client: httpx.AsyncClient, event: Any
) -> None:
    event["envelope"]["event_type"] = "border_crossing"

    body = problem(await client.post(URL, json=event), 422)

    assert body["field"] == "envelope.event_type"


async def test_a_body_over_the_limit_is_a_413_problem(
    client: httpx.AsyncClient, event: Any
) -> None:
    event["payload"]["arrival_id"] = "x" * 70_000

    problem(await client.post(URL, json=event), 413)


async def test_a_non_json_media_type_is_a_415_problem(client: httpx.AsyncClient) -> None:
    problem(
        await client.post(URL, content=b"a,b", headers={"content-type": "text/csv"}), 415
    )


@pytest.mark.parametrize(
    "authorization", [None, "Bearer nope", "Basic abc", "Bearer pte_dgme_" + "0" * 64]
)
async def test_a_missing_or_invalid_token_is_a_401_problem(
    app: Any, event: Any, authorization: str | None
) -> None:
    extra = {"Authorization": authorization} if authorization else {}
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://g"
    ) as anon:
        response = await anon.post(URL, json=event, headers=extra)

    problem(response, 401)
    assert response.headers["www-authenticate"].startswith("Bearer")


async def test_a_revoked_token_is_refused_at_the_next_request(
    client: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    (info,) = gateway.tokens.list("dgme")
    gateway.tokens.revoke(info.id)

    problem(await client.post(URL, json=event), 401)


async def test_a_token_created_by_another_process_works_without_a_restart(
    app: Any, gateway: Gateway, settings: Any, event: Any
) -> None:
    other = TokenStore(settings.tokens_file())  # what `puente gateway token create` does
    _, token = other.create("dgme")
    other.close()

    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://g"
    ) as http:
        response = await http.post(
            URL, json=event, headers={"Authorization": f"Bearer {token}"}
        )

    assert response.status_code == 202


async def test_publishing_without_the_publish_right_is_a_403_problem(
    client: httpx.AsyncClient, catalog: Catalog
) -> None:
    event = minimal_event(catalog.get("displacement_registration"), "dgme")

    body = problem(
        await client.post("/v1/events/displacement_registration", json=event), 403
    )

    assert body["reason"] == "not_allowed_to_publish"


async def test_an_envelope_naming_another_source_is_a_403_problem(
    client: httpx.AsyncClient, gateway: Gateway, catalog: Catalog
) -> None:
    event = minimal_event(catalog.get("return_arrival"), "minsal")

    body = problem(await client.post(URL, json=event), 403)

    assert body["field"] == "envelope.source_institution_id"
    assert gateway.outbox.unsent_count == 0


async def test_a_full_outbox_answers_503_with_retry_after(
    client: httpx.AsyncClient, gateway: Gateway, catalog: Catalog
) -> None:
    gateway.outbox.limit = 2
    entry = catalog.get("return_arrival")
    for _ in range(2):
        assert (
            await client.post(URL, json=minimal_event(entry, "dgme"))
        ).status_code == 202

    response = await client.post(URL, json=minimal_event(entry, "dgme"))

    problem(response, 503)
    assert int(response.headers["retry-after"]) > 0


async def test_a_batch_answers_one_result_per_event_in_order(
    client: httpx.AsyncClient, gateway: Gateway, catalog: Catalog, event: Any
) -> None:
    await client.post(URL, json=event)
    conflicting = copy.deepcopy(event)
    conflicting["payload"]["arrival_id"] = "other"
    bad = minimal_event(catalog.get("border_crossing"), "dgme")
    bad["payload"]["direction"] = "SIDEWAYS"
    forbidden = minimal_event(catalog.get("displacement_registration"), "dgme")
    fresh = minimal_event(catalog.get("referral"), "dgme")
    items = [fresh, event, conflicting, bad, forbidden]

    response = await client.post("/v1/events:batch", json={"events": items})

    assert response.status_code == 200
    body = response.json()
    assert [r["status"] for r in body["results"]] == [202, 200, 409, 422, 403]
    assert [r["index"] for r in body["results"]] == [0, 1, 2, 3, 4]
    assert body["results"][3]["field"].startswith("events[3].payload.")
    assert (body["accepted"], body["duplicates"], body["refused"]) == (1, 1, 3)
    assert gateway.outbox.unsent_count == 2


async def test_a_batch_over_the_limit_is_a_413_problem(
    client: httpx.AsyncClient, catalog: Catalog
) -> None:
    entry = catalog.get("return_arrival")
    events = [minimal_event(entry, "dgme") for _ in range(6)]

    problem(await client.post("/v1/events:batch", json={"events": events}), 413)


@pytest.mark.parametrize("body", [[], {"events": {}}, {"events": [], "extra": 1}, "x"])
async def test_a_batch_that_is_not_an_events_object_is_a_422(
    client: httpx.AsyncClient, body: Any
) -> None:
    assert (
        problem(await client.post("/v1/events:batch", json=body), 422)["field"]
        == "events"
    )


async def test_the_same_event_twice_in_one_batch_is_accepted_once(
    client: httpx.AsyncClient, event: Any
) -> None:
    response = await client.post("/v1/events:batch", json={"events": [event, event]})

    assert [r["status"] for r in response.json()["results"]] == [202, 200]


async def test_accepted_events_and_requests_are_counted_in_metrics(
    client: httpx.AsyncClient, admin: httpx.AsyncClient, event: Any
) -> None:
    await client.post(URL, json=event)
    await client.post("/v1/events/nope", json=event)

    text = (await admin.get("/metrics")).text

    assert (
        'puente_events_accepted_total{event_type="return_arrival",source="dgme"} 1.0'
        in text
    )
    route = 'route="/v1/events/return_arrival"'
    assert f'puente_gateway_requests_total{{{route},status="202"}} 1.0' in text
    assert "puente_outbox_depth 1.0" in text
    assert "puente_outbox_oldest_unsent_seconds" in text


async def test_unknown_paths_and_methods_answer_problems(
    client: httpx.AsyncClient,
) -> None:
    problem(await client.get("/v2/nothing"), 404)
    problem(await client.get(URL), 405)


async def test_a_fresh_event_id_is_what_makes_an_event_new(
    client: httpx.AsyncClient, event: Any
) -> None:
    await client.post(URL, json=event)
    event["envelope"]["event_id"] = str(uuid.uuid4())

    assert (await client.post(URL, json=event)).status_code == 202
