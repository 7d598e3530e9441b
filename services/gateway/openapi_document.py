"""The gateway's OpenAPI document, made to say what the gateway does.

FastAPI's generated document knows only the route functions: it would say every
POST answers 200 with any JSON, that a bad query parameter is a 422
``HTTPValidationError``, and that any string is an event type. Here each operation
gets every status it can answer, problems as ``application/problem+json`` with the
headers they carry, the real success schemas, and request schemas that hold what
the server holds (``envelope.event_type`` equal to the path's type, the event type
path parameter, the cursor's form). Tools that read the document (schemathesis,
client generators) then agree with the server.
"""

from __future__ import annotations

import copy
from collections.abc import Iterable, Mapping
from typing import Any, Final

from services.contracts.catalog import SchemaEntry
from services.gateway.models import (
    REF_TEMPLATE,
    BatchSummary,
    DeliveryPage,
    Health,
    IndicatorSummary,
    IndicatorTable,
    Problem,
    Receipt,
    ReferralDetail,
    ReferralPage,
    RejectionPage,
    SchemaDocument,
    component_schemas,
    event_models,
)
from services.gateway.problems import MEDIA_TYPE as PROBLEM_MEDIA

JSON: Final = "application/json"
_WHY: Final[dict[int, str]] = {
    400: "The body is not JSON, or a path or query parameter is invalid",
    401: "No bearer token, or one that is unknown, revoked or expired",
    403: "The credential lacks the scope, or the institution the right",
    404: "No such resource",
    409: "The event id was accepted before with other content",
    413: "The body, the batch or the encoded event is too large",
    415: "The body is not declared as JSON",
    422: "The event does not match its schema",
    429: "The institution is over its request rate",
    503: "The gateway, or the hub service it asks, cannot answer now; retry later",
}
_RETRY_AFTER: Final = {
    "description": "Seconds to wait before retrying",
    "schema": {"type": "integer", "minimum": 0},
}
_HEADERS: Final[dict[int, dict[str, Any]]] = {
    401: {
        "WWW-Authenticate": {
            "description": "The authentication scheme (Bearer)",
            "schema": {"type": "string"},
        }
    },
    429: {"Retry-After": _RETRY_AFTER},
    503: {"Retry-After": _RETRY_AFTER},
}
_LOCATION: Final = {
    "Location": {
        "description": "The path the event was posted to",
        "schema": {"type": "string"},
    }
}
# Statuses each kind of operation answers with a problem.
_PUBLISH: Final = (400, 401, 403, 409, 413, 415, 422, 429, 503)
_BATCH: Final = (400, 401, 403, 413, 415, 422, 429, 503)
_PULL: Final = (400, 401, 403, 404, 429, 503)
_REJECTIONS: Final = (400, 401, 403, 429, 503)
_SCHEMA: Final = (400, 401, 403, 404, 429)
# The referral and indicator reads relay to a hub service: 503 while it is down.
_RELAYED_LIST: Final = (400, 401, 403, 429, 503)
_RELAYED_ONE: Final = (400, 401, 403, 404, 429, 503)
_HXL_CSV: Final = {
    "schema": {"type": "string"},
    "example": "Period,From,To,Returns,Suppressed\n#date,#date+start,#date+end,"
    "#affected+returned,#meta+suppressed\n",
}


def ref(model: str) -> dict[str, str]:
    """A ``$ref`` to a component schema."""
    return {"$ref": REF_TEMPLATE.format(model=model)}


def problem_responses(statuses: Iterable[int]) -> dict[str, Any]:
    """``responses`` entries for problems the operation may answer."""
    out: dict[str, Any] = {}
    for status in statuses:
        answer: dict[str, Any] = {
            "description": _WHY[status],
            "content": {PROBLEM_MEDIA: {"schema": ref("Problem")}},
        }
        if status in _HEADERS:
            answer["headers"] = copy.deepcopy(_HEADERS[status])
        out[str(status)] = answer
    return out


def _success(model: str, description: str, *, located: bool = False) -> dict[str, Any]:
    answer: dict[str, Any] = {
        "description": description,
        "content": {JSON: {"schema": ref(model)}},
    }
    if located:
        answer["headers"] = copy.deepcopy(_LOCATION)
    return answer


def _responses(path: str, method: str) -> dict[str, Any] | None:
    """The whole ``responses`` object of one operation, or None: left as generated."""
    if method == "post" and path == "/v1/events:batch":
        ok = {"200": _success("BatchSummary", "One result per event, in order")}
        return ok | problem_responses(_BATCH)
    if method == "post" and path.startswith("/v1/events/"):
        ok = {
            "202": _success(
                "Receipt", "Durable in the outbox; relayed to the hub", located=True
            ),
            "200": _success(
                "Receipt", "The same event again: the first receipt", located=True
            ),
        }
        return ok | problem_responses(_PUBLISH)
    if path == "/v1/deliveries/{event_type}":
        return {"200": _success("DeliveryPage", "A page of deliveries")} | (
            problem_responses(_PULL)
        )
    if path == "/v1/rejections":
        return {"200": _success("RejectionPage", "A page of rejections")} | (
            problem_responses(_REJECTIONS)
        )
    if path == "/v1/schemas/{fingerprint}":
        return {"200": _success("SchemaDocument", "The writer schema")} | (
            problem_responses(_SCHEMA)
        )
    if path == "/health":
        return {"200": _success("Health", "The gateway is up")}
    return _relayed(path)


def _link(target: str, parameter: str, pointer: str) -> dict[str, Any]:
    """An OpenAPI link from a list to one item: its id feeds ``target``'s parameter.

    Tools that follow links (schemathesis's stateful phase, client generators) then
    read real items instead of guessing ids.
    """
    escaped = target.replace("~", "~0").replace("/", "~1")
    return {
        "item": {
            "operationRef": f"#/paths/{escaped}/get",
            "parameters": {parameter: f"$response.body#/{pointer}"},
        }
    }


def _relayed(path: str) -> dict[str, Any] | None:
    """The answers of the reads relayed to the referral tracker or indicators service."""
    if path == "/v1/referrals":
        ok = _success("ReferralPage", "The caller's referrals, newest first")
        one = "/v1/referrals/{referral_id}"
        ok["links"] = _link(one, "referral_id", "referrals/0/referral_id")
        return {"200": ok} | problem_responses(_RELAYED_LIST)
    if path == "/v1/referrals/{referral_id}":
        ok = _success("ReferralDetail", "The referral with its history")
        return {"200": ok} | problem_responses(_RELAYED_ONE)
    if path == "/v1/indicators":
        ok = {
            "description": "The indicators the caller's aggregate grants cover",
            "content": {
                JSON: {"schema": {"type": "array", "items": ref("IndicatorSummary")}}
            },
            "links": _link("/v1/indicators/{indicator_id}", "indicator_id", "0/id"),
        }
        return {"200": ok} | problem_responses(_RELAYED_LIST)
    if path == "/v1/indicators/{indicator_id}":
        ok = _success("IndicatorTable", "Protected tables; HXL CSV by Accept or format")
        ok["content"]["text/csv"] = copy.deepcopy(_HXL_CSV)
        return {"200": ok} | problem_responses(_RELAYED_ONE)
    return None


def typed_envelopes(
    schemas: dict[str, Any], event_types: Mapping[str, SchemaEntry]
) -> None:
    """Give each event type's request schema an envelope whose ``event_type`` is it.

    The catalog shares one envelope record among the event types; the gateway
    refuses an envelope naming another type than the path's, so the document says
    so with one envelope component per type.
    """
    for name, entry in event_types.items():
        event = schemas.get(entry.schema["name"])
        if event is None:
            continue
        envelope_ref = event["properties"]["envelope"]
        shared = envelope_ref.get("$ref") or envelope_ref["allOf"][0]["$ref"]
        shared_name = shared.rsplit("/", 1)[-1]
        own = copy.deepcopy(schemas[shared_name])
        own["properties"]["event_type"] = {
            "type": "string",
            "enum": [name],
            "description": "The event type id: the path's event type",
        }
        own["title"] = f"{entry.schema['name']}Envelope"
        schemas[own["title"]] = own
        event["properties"]["envelope"] = ref(own["title"])


def complete(
    document: dict[str, Any], event_types: Mapping[str, SchemaEntry]
) -> dict[str, Any]:
    """Add the catalog's schemas and every operation's real answers to ``document``."""
    schemas = document.setdefault("components", {}).setdefault("schemas", {})
    for generated in ("HTTPValidationError", "ValidationError"):
        schemas.pop(generated, None)
    models = event_models(event_types.values())
    schemas.update(component_schemas(models.values()))
    answers = (Receipt, BatchSummary, DeliveryPage, RejectionPage, Health, Problem)
    relayed = (ReferralPage, ReferralDetail, IndicatorSummary, IndicatorTable)
    schemas.update(
        component_schemas((*answers, SchemaDocument, *relayed), mode="serialization")
    )
    typed_envelopes(schemas, event_types)
    for path, operations in document.get("paths", {}).items():
        for method, operation in operations.items():
            responses = _responses(path, method)
            if responses is not None:
                operation["responses"] = responses
            for parameter in operation.get("parameters", ()):
                if parameter["name"] == "event_type" and parameter["in"] == "path":
                    parameter["schema"] = {"type": "string", "enum": sorted(event_types)}
                if parameter["name"] == "fingerprint" and event_types:
                    # A schema that exists, so tools also see the 200 answer.
                    first = event_types[min(event_types)]
                    parameter["example"] = first.fingerprint_hex
    return document
