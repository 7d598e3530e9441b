"""Fixtures of the gateway's unit tests: an app on an in-memory transport."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway.app import build_app
from services.gateway.deliveries import Cursor, Page
from services.gateway.handlers import Gateway
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.settings import HubSettings, KafkaSettings


class FakeReader:
    """Stands in for the Kafka reader: serves records the test put in."""

    def __init__(self) -> None:
        self.records: dict[str, list[Any]] = {}
        self.calls: list[tuple[str, Cursor, int]] = []

    async def read(self, topic: str, cursor: Cursor, limit: int) -> Page:
        self.calls.append((topic, dict(cursor), limit))
        pending = [
            r
            for r in self.records.get(topic, [])
            if r.offset >= cursor.get(r.partition, 0)
        ]
        page = pending[:limit]
        after = dict(cursor)
        for record in page:
            after[record.partition] = record.offset + 1
        return Page(page, after)

    async def close(self) -> None:
        """Nothing to close."""


@pytest.fixture
def settings(state_dir: Path) -> GatewaySettings:
    return GatewaySettings(
        hub=HubSettings(state_dir=state_dir),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        max_body_bytes=64 * 1024,
        batch_max=5,
        outbox_limit=50,
    )


@pytest.fixture
def rights() -> StaticRights:
    return StaticRights(
        {
            "dgme": ["return_arrival", "border_crossing", "referral"],
            "minsal": ["referral"],
        }
    )


@pytest.fixture
async def app(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: StaticRights,
    catalog: Catalog,
) -> AsyncIterator[FastAPI]:
    application = build_app(settings, registry, rights, catalog=catalog)
    application.state.gateway.reader = FakeReader()
    async with application.router.lifespan_context(application):
        yield application


@pytest.fixture
def gateway(app: FastAPI) -> Gateway:
    gw: Gateway = app.state.gateway
    return gw


@pytest.fixture
def reader(gateway: Gateway) -> FakeReader:
    fake = gateway.reader
    assert isinstance(fake, FakeReader)
    return fake


@pytest.fixture
def token(gateway: Gateway) -> str:
    return gateway.tokens.create("dgme")[1]


@pytest.fixture
async def client(app: FastAPI, token: str) -> AsyncIterator[httpx.AsyncClient]:
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {token}"},
    ) as http:
        yield http


@pytest.fixture
async def admin(app: FastAPI) -> AsyncIterator[httpx.AsyncClient]:
    """A client of the admin app (metrics and documents), without credentials."""
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app.state.admin), base_url="http://admin"
    ) as http:
        yield http


@pytest.fixture
def event(catalog: Catalog) -> Any:
    return minimal_event(catalog.get("return_arrival"), "dgme")
