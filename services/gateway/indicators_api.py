"""``GET /v1/indicators[/{id}]``: published aggregates for institutions with a grant.

The gateway authenticates the institution (a token with the ``read`` scope) and
asks the indicators service (its operations port, 9104 by default) for the tables
that institution may read: the service knows the catalogue and the aggregate
grants, applies disclosure control and answers 403 to an institution whose grant
does not cover the indicator or the breakdown. Only protected counts pass through
here; the gateway keeps no copy.

JSON by default; HXL-tagged CSV with ``Accept: text/csv`` or ``format=hxl-csv``.
The OpenAPI document (openapi_document.py) states both media types and a 503 with
``Retry-After`` while the indicators service does not answer.
"""

# No `from __future__ import annotations`: FastAPI reads the local Reader alias
# of the route signatures when they are defined.

import urllib.parse
from datetime import date
from typing import Annotated, Any, Final, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import Response

from services.gateway.handlers import Gateway
from services.gateway.problems import ProblemError, bad_request, not_found
from services.gateway.service_link import ask, authenticated_reader, refusal_detail

CSV: Final = "text/csv"
HXL_CSV: Final = "hxl-csv"
# A day as YYYY-MM-DD only: FastAPI's own date parameters would also take numbers.
DAY: Final[dict[str, Any]] = {
    "pattern": r"^\d{4}-\d{2}-\d{2}$",
    "json_schema_extra": {"format": "date"},
    "description": "A day, YYYY-MM-DD (local time); whole periods are answered",
}
# Dimension ids, comma-separated; the service allows at most two per request.
BY_PATTERN: Final = "^([a-z][a-z0-9_]{0,39}(,[a-z][a-z0-9_]{0,39})?)?$"


class IndicatorsLink(BaseSettings):
    """Where the indicators service answers (``PUENTE_GATEWAY_INDICATORS_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="PUENTE_GATEWAY_INDICATORS_", extra="ignore"
    )

    url: str = "http://127.0.0.1:9104"
    # A cold request protects every period of its range (cached after).
    timeout_seconds: float = Field(default=30.0, gt=0)


def no_aggregate_grant(detail: str) -> ProblemError:
    """The institution's aggregate grants do not cover this request (403)."""
    return ProblemError(
        403,
        "no-aggregate-grant",
        "Aggregate grant missing",
        detail,
        reason="no_aggregate_grant",
    )


def indicators_unavailable() -> ProblemError:
    """The indicators service did not answer (503)."""
    return ProblemError(
        503,
        "indicators-unavailable",
        "Indicators temporarily unavailable",
        "the indicators service did not answer; retry later",
        headers={"Retry-After": "5"},
    )


def indicator_routes(
    app: FastAPI, gw: Gateway, link: IndicatorsLink | None = None
) -> None:
    """Add the indicator routes to the gateway's public app."""
    where = link or IndicatorsLink()

    Reader = Annotated[str, Depends(authenticated_reader(gw))]  # noqa: N806 - a type alias

    @app.get("/v1/indicators", tags=["indicators"])
    async def list_indicators(caller: Reader) -> Response:
        """The indicators the caller's aggregate grants let it read."""
        return await _forward(where, "/v1/indicators", {"reader": caller}, "json")

    @app.get("/v1/indicators/{indicator_id}", tags=["indicators"])
    async def get_indicator(
        indicator_id: Annotated[str, Path(max_length=64)],
        caller: Reader,
        request: Request,
        *,
        start: Annotated[str | None, Query(alias="from", **DAY)] = None,
        end: Annotated[str | None, Query(alias="to", **DAY)] = None,
        by: Annotated[str, Query(pattern=BY_PATTERN)] = "",
        fmt: Annotated[Literal["json", "hxl-csv"] | None, Query(alias="format")] = None,
        rounding: Annotated[int | None, Query(alias="round", ge=2, le=1000)] = None,
    ) -> Response:
        """One indicator's protected tables (whole periods; at most two dimensions)."""
        wanted = fmt or (HXL_CSV if CSV in request.headers.get("accept", "") else "json")
        optional = (("from", day(start)), ("to", day(end)), ("round", rounding))
        query: dict[str, Any] = {"reader": caller, "by": by, "format": wanted}
        query.update({k: v for k, v in optional if v is not None})
        path = "/v1/indicators/" + urllib.parse.quote(indicator_id, safe="")
        return await _forward(where, path, query, wanted)


def day(text: str | None) -> str | None:
    """``text`` if it is a calendar day; a 400 problem if it only looks like one."""
    if text is None:
        return None
    try:
        return date.fromisoformat(text).isoformat()
    except ValueError as e:
        raise bad_request(f"{text!r} is not a day (YYYY-MM-DD)") from e


async def _forward(
    link: IndicatorsLink, path: str, query: dict[str, Any], wanted: str
) -> Response:
    answer = await ask(link.url, path, query, link.timeout_seconds)
    if answer.status == 200:
        return Response(
            answer.body, media_type=CSV if wanted == HXL_CSV else answer.media
        )
    detail = refusal_detail(answer.body, "the indicators service refused the request")
    if answer.status == 403:
        raise no_aggregate_grant(detail)
    if answer.status == 404:
        raise not_found(detail)
    if answer.status in {400, 422}:
        raise bad_request(detail)
    raise indicators_unavailable()
