"""The OpenAPI document states the referral and indicator reads the gateway relays."""

from __future__ import annotations

from typing import Any

import httpx


def parameters(operation: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """An operation's parameters by name."""
    return {p["name"]: p for p in operation["parameters"]}


async def test_the_referral_reads_are_documented_with_their_filters_and_answers(
    admin: httpx.AsyncClient,
) -> None:
    document = (await admin.get("/openapi.json")).json()
    listing = document["paths"]["/v1/referrals"]["get"]
    one = document["paths"]["/v1/referrals/{referral_id}"]["get"]
    query = parameters(listing)
    schemas = document["components"]["schemas"]

    assert set(listing["responses"]) == {"200", "400", "401", "403", "429", "503"}
    assert "404" in one["responses"]
    assert "Retry-After" in listing["responses"]["503"]["headers"]
    assert "sent" in str(query["role"]["schema"])
    assert "IN_SERVICE" in str(query["status"]["schema"])
    assert "boolean" in str(query["overdue"]["schema"])
    assert "history" in schemas["ReferralDetail"]["properties"]
    ok = one["responses"]["200"]["content"]["application/json"]["schema"]
    assert ok == {"$ref": "#/components/schemas/ReferralDetail"}


async def test_the_indicator_reads_are_documented_as_json_or_hxl_csv(
    admin: httpx.AsyncClient,
) -> None:
    document = (await admin.get("/openapi.json")).json()
    table = document["paths"]["/v1/indicators/{indicator_id}"]["get"]
    listing = document["paths"]["/v1/indicators"]["get"]
    query = parameters(table)
    ok = table["responses"]["200"]["content"]

    assert set(ok) == {"application/json", "text/csv"}
    assert ok["application/json"]["schema"]["$ref"].endswith("/IndicatorTable")
    assert set(table["responses"]) >= {"400", "403", "404", "503"}
    assert "Retry-After" in table["responses"]["503"]["headers"]
    assert "'format': 'date'" in str(query["from"]["schema"])
    assert "pattern" in str(query["by"]["schema"])
    assert "hxl-csv" in str(query["format"]["schema"])
    link = listing["responses"]["200"]["links"]["item"]
    assert link["parameters"] == {"indicator_id": "$response.body#/0/id"}
    assert link["operationRef"] == "#/paths/~1v1~1indicators~1{indicator_id}/get"
    assert listing["responses"]["200"]["content"]["application/json"]["schema"] == {
        "type": "array",
        "items": {"$ref": "#/components/schemas/IndicatorSummary"},
    }
