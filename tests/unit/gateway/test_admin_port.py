"""Metrics and documents on the admin port only; health on both (real listeners)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.gateway.app import GatewayService
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings


@pytest.fixture
async def service(state_dir: Path) -> AsyncIterator[GatewayService]:
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        hub=HubSettings(state_dir=state_dir),
        # Nothing listens there: the relay retries in the background meanwhile.
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        prepare_workers=0,
    )
    gateway = GatewayService(
        settings, CollectorRegistry(), StaticRights({"dgme": ["referral"]})
    )
    await gateway.start()
    yield gateway
    await gateway.stop()


def test_the_admin_listener_defaults_to_loopback_on_its_own_port() -> None:
    settings = GatewaySettings()

    assert settings.admin_host == "127.0.0.1"
    assert settings.admin_port == 8081
    assert settings.admin_port != settings.port


async def test_metrics_and_docs_are_served_on_the_admin_port_and_not_on_the_public_one(
    service: GatewayService,
) -> None:
    public = f"http://127.0.0.1:{service.settings.port}"
    admin = f"http://127.0.0.1:{service.settings.admin_port}"
    async with httpx.AsyncClient(timeout=10) as http:
        hidden = {p: (await http.get(public + p)).status_code for p in PATHS}
        shown = {p: (await http.get(admin + p)).status_code for p in PATHS}
        health = [(await http.get(base + "/health")).json() for base in (public, admin)]
        metrics = (await http.get(admin + "/metrics")).text
        document = (await http.get(admin + "/openapi.json")).json()

    assert hidden == dict.fromkeys(PATHS, 404)
    assert shown == dict.fromkeys(PATHS, 200)
    assert [h["ok"] for h in health] == [True, True]
    assert 'puente_gateway_requests_total{route="unmatched",status="404"}' in metrics
    assert "/v1/events/referral" in document["paths"]
    assert "/metrics" not in document["paths"]


PATHS = ("/metrics", "/docs", "/openapi.json")
