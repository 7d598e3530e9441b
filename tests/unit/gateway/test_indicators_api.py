"""The gateway's indicator routes against a stand-in indicators service (real HTTP)."""

from __future__ import annotations

import json
import threading
import urllib.parse
from collections.abc import AsyncIterator, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.gateway.app import build_app
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.embedded import free_port

CSV = (
    "Period,From,To,Sex,Count,Suppressed\n"
    "#date,#date+start,#date+end,#gender+code,#affected,#meta+suppressed\n"
)


class StandIn(BaseHTTPRequestHandler):
    """Answers like the indicators service: bcr may read, anyone else is refused."""

    seen: list[dict[str, list[str]]] = []  # noqa: RUF012 - one class per test module

    def do_GET(self) -> None:
        url = urllib.parse.urlsplit(self.path)
        query = urllib.parse.parse_qs(url.query)
        StandIn.seen.append(query)
        if query.get("reader") != ["bcr"]:
            self._send(403, {"detail": "dgme holds no aggregate grant to read returns"})
        elif query.get("format") == ["hxl-csv"]:
            self._send(200, CSV, "text/csv")
        else:
            self._send(200, {"indicator": "returns", "tables": []})

    def _send(self, status: int, body: object, media: str = "application/json") -> None:
        data = body.encode() if isinstance(body, str) else json.dumps(body).encode()
        self.send_response(status)
        self.send_header("content-type", media)
        self.send_header("content-length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002
        del format, args


@pytest.fixture
def service() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", free_port()), StandIn)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server.server_address[1]
    server.shutdown()
    server.server_close()


@pytest.fixture
async def gateway_app(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: StaticRights,
    catalog: Catalog,
    service: int,
    monkeypatch: pytest.MonkeyPatch,
) -> AsyncIterator[FastAPI]:
    monkeypatch.setenv("PUENTE_GATEWAY_INDICATORS_URL", f"http://127.0.0.1:{service}")
    application = build_app(settings, registry, rights, catalog=catalog)
    async with application.router.lifespan_context(application):
        yield application


async def get(app: FastAPI, who: str, path: str, **headers: str) -> httpx.Response:
    token = app.state.gateway.tokens.create(who)[1]
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app), base_url="http://gateway"
    ) as http:
        return await http.get(
            path, headers={"Authorization": f"Bearer {token}", **headers}
        )


async def test_an_institution_with_a_grant_gets_the_services_json(
    gateway_app: FastAPI,
) -> None:
    answer = await get(
        gateway_app, "bcr", "/v1/indicators/returns?by=sex&from=2026-11-01"
    )
    assert answer.status_code == 200
    assert answer.json()["indicator"] == "returns"
    assert StandIn.seen[-1] == {
        "reader": ["bcr"], "by": ["sex"], "format": ["json"], "from": ["2026-11-01"]
    }  # fmt: skip


async def test_accept_text_csv_asks_for_the_hxl_csv(gateway_app: FastAPI) -> None:
    answer = await get(gateway_app, "bcr", "/v1/indicators/returns", accept="text/csv")
    assert answer.status_code == 200
    assert answer.headers["content-type"].startswith("text/csv")
    assert answer.text.splitlines()[1].startswith("#date")


async def test_an_institution_without_a_grant_gets_a_403_problem(
    gateway_app: FastAPI,
) -> None:
    answer = await get(gateway_app, "dgme", "/v1/indicators/returns")
    assert answer.status_code == 403
    assert answer.headers["content-type"] == "application/problem+json"
    assert answer.json()["reason"] == "no_aggregate_grant"


async def test_no_token_is_401_and_never_reaches_the_service(
    gateway_app: FastAPI,
) -> None:
    before = len(StandIn.seen)
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(gateway_app), base_url="http://gateway"
    ) as http:
        answer = await http.get("/v1/indicators/returns")
    assert answer.status_code == 401
    assert len(StandIn.seen) == before


async def test_an_unreachable_service_is_a_503_problem(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: StaticRights,
    catalog: Catalog,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUENTE_GATEWAY_INDICATORS_URL", f"http://127.0.0.1:{free_port()}")
    app = build_app(settings, registry, rights, catalog=catalog)
    async with app.router.lifespan_context(app):
        answer = await get(app, "bcr", "/v1/indicators/returns")
    assert answer.status_code == 503
    assert answer.json()["type"].endswith("indicators-unavailable")


@pytest.mark.parametrize(
    "query", ["to=0", "from=2026-02-30", "by=sex,age_group,department", "format=xml"]
)
async def test_a_query_the_document_forbids_is_a_400_never_asked_of_the_service(
    gateway_app: FastAPI, query: str
) -> None:
    before = len(StandIn.seen)
    answer = await get(gateway_app, "bcr", f"/v1/indicators/returns?{query}")
    assert answer.status_code == 400
    assert answer.headers["content-type"] == "application/problem+json"
    assert len(StandIn.seen) == before
