"""Ask a hub service's operations port on behalf of an authenticated institution.

The indicators service and the referral tracker answer institutions' reads on their
operations ports; the gateway authenticates the caller, names it in the query and
forwards the answer. This module holds what both relays share: the bearer-token
dependency, the HTTP request and the reading of a refusal's detail.
"""

from __future__ import annotations

import asyncio
import json
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Awaitable, Callable
from typing import Annotated, Any, Final, NamedTuple

from fastapi import Depends
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer

from services.gateway.handlers import Gateway
from services.gateway.tokens import Scope

JSON: Final = "application/json"
_bearer = HTTPBearer(auto_error=False, description="pte_<institution>_<64 hex digits>")


class Answer(NamedTuple):
    """A hub service's answer: status (503 if it did not answer), body, media type."""

    status: int
    body: bytes
    media: str


def authenticated_reader(gw: Gateway) -> Callable[..., Awaitable[str]]:
    """A FastAPI dependency: the institution of a bearer token with the read scope."""

    async def reader(
        credentials: Annotated[HTTPAuthorizationCredentials | None, Depends(_bearer)],
    ) -> str:
        return gw.authenticate(
            credentials.credentials if credentials else None, Scope.READ
        )

    return reader


async def ask(base: str, path: str, query: dict[str, Any], seconds: float) -> Answer:
    """GET ``path`` with ``query`` from the service at ``base``, waiting ``seconds``."""
    url = f"{base.rstrip('/')}{path}?{urllib.parse.urlencode(query)}"
    return await asyncio.to_thread(_fetch, url, seconds)


def refusal_detail(body: bytes, refused: str) -> str:
    """The ``detail`` of a service's problem answer; ``refused`` if it has none."""
    try:
        detail = json.loads(body).get("detail")
    except (ValueError, AttributeError):
        return refused
    return detail if isinstance(detail, str) else "the request is not valid"


def _fetch(url: str, timeout: float) -> Answer:
    request = urllib.request.Request(url, method="GET")  # noqa: S310 - our own service
    try:
        with urllib.request.urlopen(request, timeout=timeout) as answer:  # noqa: S310
            media = answer.headers.get("content-type", JSON)
            return Answer(int(answer.status), answer.read(), str(media))
    except urllib.error.HTTPError as e:
        return Answer(int(e.code), e.read(), JSON)
    except (OSError, TimeoutError):
        return Answer(503, b"", JSON)
