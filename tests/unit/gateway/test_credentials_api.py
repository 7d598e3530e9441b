"""Credential scopes, expiry, last use and the per-institution rate limit, over HTTP."""

from __future__ import annotations

import hashlib
import sqlite3
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from fastapi import FastAPI
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.contracts.catalog import Catalog
from services.gateway.app import build_app
from services.gateway.cli import app as cli
from services.gateway.handlers import Gateway
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import Scope, TokenStore
from services.runtime.settings import HubSettings, KafkaSettings
from tests.unit.gateway.conftest import FakeReader

URL = "/v1/events/return_arrival"
PROBLEM = "application/problem+json"


@pytest.fixture
def settings(state_dir: Path) -> GatewaySettings:
    return GatewaySettings(
        hub=HubSettings(state_dir=state_dir),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        max_body_bytes=64 * 1024,
        batch_max=5,
        rate_limit_per_s=1.0,
        rate_limit_burst=4,
    )


def http(app: FastAPI, token: str) -> httpx.AsyncClient:
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app),
        base_url="http://gateway",
        headers={"Authorization": f"Bearer {token}"},
    )


@pytest.fixture
async def publisher(app: FastAPI, gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    _, token = gateway.tokens.create("dgme", {Scope.PUBLISH})
    async with http(app, token) as client:
        yield client


@pytest.fixture
async def reader_only(app: FastAPI, gateway: Gateway) -> AsyncIterator[httpx.AsyncClient]:
    _, token = gateway.tokens.create("dgme", {Scope.READ})
    async with http(app, token) as client:
        yield client


async def test_a_publishing_token_cannot_read_deliveries_or_rejections(
    publisher: httpx.AsyncClient, event: Any
) -> None:
    posted = await publisher.post(URL, json=event)
    deliveries = await publisher.get("/v1/deliveries/return_arrival")
    rejections = await publisher.get("/v1/rejections")

    assert posted.status_code == 202
    for response in (deliveries, rejections):
        assert response.status_code == 403, response.text
        assert response.headers["content-type"] == PROBLEM
        assert response.json()["type"] == "urn:puente:problem:insufficient-scope"
        assert response.json()["scope"] == "read"


async def test_a_reading_token_cannot_publish(
    reader_only: httpx.AsyncClient, gateway: Gateway, event: Any
) -> None:
    single = await reader_only.post(URL, json=event)
    batch = await reader_only.post("/v1/events:batch", json={"events": [event]})
    read = await reader_only.get("/v1/deliveries/return_arrival")

    assert single.status_code == 403
    assert batch.status_code == 403
    assert single.json()["scope"] == "publish"
    assert read.status_code == 200
    assert gateway.outbox.unsent_count == 0


async def test_an_expired_token_is_refused_with_401(
    app: FastAPI, gateway: Gateway, settings: GatewaySettings, event: Any
) -> None:
    info, token = gateway.tokens.create("dgme", expires_in_days=1)
    async with http(app, token) as client:
        before = await client.post(URL, json=event)
        # What time does: the expiry passes (written by another connection, as the
        # CLI would, so the gateway's cache must notice).
        past = (datetime.now(UTC) - timedelta(seconds=1)).isoformat()
        with sqlite3.connect(settings.tokens_file()) as db:
            db.execute("UPDATE tokens SET expires_at = ? WHERE id = ?", (past, info.id))
        after = await client.get("/v1/deliveries/return_arrival")

    assert before.status_code == 202
    assert after.status_code == 401
    assert after.headers["content-type"] == PROBLEM
    assert "expired" in after.json()["detail"]
    assert gateway.tokens.list()[0].state == "expired"


async def test_a_revoked_token_is_refused_with_401_for_reads_too(
    app: FastAPI, gateway: Gateway
) -> None:
    info, token = gateway.tokens.create("dgme")
    gateway.tokens.revoke(info.id)
    async with http(app, token) as client:
        response = await client.get("/v1/rejections")

    assert response.status_code == 401


async def test_a_new_token_expires_after_the_configured_days_and_records_its_last_use(
    client: httpx.AsyncClient, gateway: Gateway
) -> None:
    (info,) = gateway.tokens.list()
    assert info.last_used_at is None

    await client.get("/v1/rejections")
    gateway.tokens.flush_last_use()
    (used,) = gateway.tokens.list()

    assert info.expires_at is not None
    assert info.expires_at - info.created_at == timedelta(days=90)
    assert used.last_used_at is not None
    assert datetime.now(UTC) - used.last_used_at < timedelta(seconds=5)


async def test_an_institution_over_its_rate_gets_429_with_retry_after_and_others_do_not(
    app: FastAPI, gateway: Gateway
) -> None:
    _, dgme = gateway.tokens.create("dgme")
    _, minsal = gateway.tokens.create("minsal")
    async with http(app, dgme) as first, http(app, minsal) as second:
        allowed = [(await first.get("/v1/rejections")).status_code for _ in range(4)]
        over = await first.get("/v1/rejections")
        other = await second.get("/v1/rejections")

    assert allowed == [200, 200, 200, 200]
    assert over.status_code == 429
    assert over.headers["content-type"] == PROBLEM
    assert int(over.headers["Retry-After"]) >= 1
    assert other.status_code == 200


def old_store(path: Path, token: str) -> None:
    """A token store as the gateway wrote it before scopes and expiry existed."""
    with sqlite3.connect(path) as db:
        db.execute(
            "CREATE TABLE tokens (id TEXT PRIMARY KEY, institution TEXT NOT NULL,"
            " hash BLOB NOT NULL UNIQUE, created_at TEXT NOT NULL, revoked_at TEXT)"
        )
        db.execute(
            "INSERT INTO tokens VALUES"
            " ('0a1b2c3d', 'dgme', ?, '2026-01-02T03:04:05+00:00', NULL)",
            (hashlib.sha256(token.encode()).digest(),),
        )


async def test_a_token_of_a_store_from_before_scopes_keeps_working_with_both_scopes(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: StaticRights,
    catalog: Catalog,
    event: Any,
) -> None:
    token = "pte_dgme_" + "ab" * 32
    settings.tokens_file().parent.mkdir(parents=True)
    old_store(settings.tokens_file(), token)

    app = build_app(settings, registry, rights, catalog=catalog)
    app.state.gateway.reader = FakeReader()
    async with app.router.lifespan_context(app), http(app, token) as client:
        posted = await client.post(URL, json=event)
        read = await client.get("/v1/deliveries/return_arrival")
        (info,) = app.state.gateway.tokens.list()

    assert posted.status_code == 202
    assert read.status_code == 200
    assert info.scopes == {Scope.PUBLISH, Scope.READ}
    assert info.expires_at is not None
    expected = datetime.now(UTC) + timedelta(days=90)
    assert abs(info.expires_at - expected) < timedelta(minutes=1)
    assert info.state == "active"
    again = TokenStore(settings.tokens_file())
    assert [i.expires_at for i in again.list()] == [info.expires_at]  # migrated once
    again.close()


def test_the_cli_creates_a_scoped_expiring_token_lists_it_without_secret_and_revokes(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "t.sqlite")
    runner = CliRunner()

    created = runner.invoke(
        cli,
        [
            "token", "create", "--institution", "dgme", "--scope", "publish",
            "--expires-in", "7", "--store", store,
        ],
    )  # fmt: skip
    token = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["token", "list", "--store", store])
    (info,) = TokenStore(Path(store)).list()
    revoked = runner.invoke(cli, ["token", "revoke", info.id, "--store", store])
    relisted = runner.invoke(cli, ["token", "list", "--store", store])
    bad_scope = runner.invoke(
        cli,
        ["token", "create", "-i", "dgme", "--scope", "admin", "--store", store],
    )

    assert created.exit_code == 0, created.stderr
    assert info.scopes == {Scope.PUBLISH}
    assert info.expires_at is not None
    assert info.expires_at - info.created_at == timedelta(days=7)
    assert listed.exit_code == 0
    assert "publish" in listed.stdout
    assert "active" in listed.stdout
    assert info.expires_at.isoformat()[:10] in listed.stdout
    assert token not in listed.stdout
    assert token.rsplit("_", 1)[1][:16] not in listed.stdout
    assert revoked.exit_code == 0
    assert "revoked" in relisted.stdout
    assert bad_scope.exit_code == 1
    assert "valid scopes" in bad_scope.stderr
