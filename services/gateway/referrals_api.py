"""``GET /v1/referrals[/{id}]``: the referrals the calling institution is a party to.

The gateway authenticates the institution (a token with the ``read`` scope) and asks
the referral tracker (its operations port, 9103 by default) for that institution's
view, naming it: the tracker answers with the referrals the institution made
(``role=sent``) or is to serve (``role=received``), filtered by ``status`` and
``overdue``, and for one referral its history (every applied transition with its
time and institution). Another institution's referral answers 404, as an unknown one
does, so its existence is not disclosed.

Why over HTTP rather than the tracker's SQLite file: the tracker stays the one
process that opens its database, the gateway needs no volume shared with it (in
production they run in separate containers, and the gateway faces the internet), and
the tracker, which knows the policy's parties, decides what each one sees; the
gateway only authenticates and forwards. Nothing is cached here.

The OpenAPI document (openapi_document.py) states their answers: the views as
``ReferralPage`` and ``ReferralDetail`` and a 503 with ``Retry-After`` while the
tracker does not answer.
"""

import os
import urllib.parse
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict
from starlette.responses import Response

from services.gateway.handlers import Gateway
from services.gateway.models import ReferralStatus
from services.gateway.problems import ProblemError, bad_request, not_found
from services.gateway.service_link import ask, authenticated_reader, refusal_detail


def tracker_url() -> str:
    """The tracker's address as ``puente up`` runs it: its own port setting, locally.

    So a tracker moved to another port (``PUENTE_REFERRALS_PORT``) is still found
    without a second setting; across hosts, ``PUENTE_GATEWAY_REFERRALS_URL`` names it.
    """
    host = os.environ.get("PUENTE_REFERRALS_HOST", "127.0.0.1")
    if host in {"0.0.0.0", "::", ""}:  # noqa: S104 - a listening address, not ours
        host = "127.0.0.1"
    port = os.environ.get("PUENTE_REFERRALS_PORT", "9103")
    return f"http://{host}:{port}"


class ReferralsLink(BaseSettings):
    """Where the referral tracker answers (``PUENTE_GATEWAY_REFERRALS_*``)."""

    model_config = SettingsConfigDict(
        env_prefix="PUENTE_GATEWAY_REFERRALS_", extra="ignore"
    )

    url: str = Field(default_factory=tracker_url)
    timeout_seconds: float = Field(default=10.0, gt=0)


def referrals_unavailable() -> ProblemError:
    """The referral tracker did not answer (503)."""
    return ProblemError(
        503,
        "referrals-unavailable",
        "Referrals temporarily unavailable",
        "the referral tracker did not answer; retry later",
        headers={"Retry-After": "5"},
    )


def referral_routes(app: FastAPI, gw: Gateway, link: ReferralsLink | None = None) -> None:
    """Add the referral routes to the gateway's public app."""
    where = link or ReferralsLink()

    Reader = Annotated[str, Depends(authenticated_reader(gw))]  # noqa: N806 - a type alias

    @app.get("/v1/referrals", tags=["referrals"])
    async def list_referrals(
        caller: Reader,
        role: Literal["sent", "received"] | None = None,
        status: ReferralStatus | None = None,
        overdue: bool = False,
        limit: Annotated[int, Query(ge=1, le=1000)] = 200,
    ) -> Response:
        """Referrals the caller made (sent) or is to serve (received), newest first."""
        query: dict[str, Any] = {"institution": caller, "limit": limit}
        optional = (("role", role), ("status", status))
        query.update({k: v for k, v in optional if v is not None})
        if overdue:
            query["overdue"] = "true"
        return await _forward(where, "/v1/referrals", query)

    @app.get("/v1/referrals/{referral_id}", tags=["referrals"])
    async def get_referral(
        referral_id: Annotated[str, Path(max_length=64)], caller: Reader
    ) -> Response:
        """One of the caller's referrals with its history of transitions."""
        path = "/v1/referrals/" + urllib.parse.quote(referral_id, safe="")
        return await _forward(where, path, {"institution": caller})


async def _forward(link: ReferralsLink, path: str, query: dict[str, Any]) -> Response:
    answer = await ask(link.url, path, query, link.timeout_seconds)
    if answer.status == 200:
        return Response(answer.body, media_type="application/json")
    refused = "the referral tracker refused the request"
    if answer.status == 404:
        raise not_found(refusal_detail(answer.body, refused))
    if answer.status in {400, 422}:
        raise bad_request(refusal_detail(answer.body, refused))
    raise referrals_unavailable()
