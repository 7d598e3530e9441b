"""Property-based fuzzing of the gateway from its own OpenAPI: no input earns a 5xx."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from prometheus_client import CollectorRegistry
from schemathesis.python import asgi

from services.contracts.catalog import Catalog
from services.contracts.ids import EVENT_TYPES
from services.fuzz.gateway import RELAYED_PATHS
from services.gateway.app import build_app
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from tests.unit.gateway.conftest import FakeReader

_STATE = Path(tempfile.mkdtemp(prefix="puente-fuzz-"))
APP = build_app(
    GatewaySettings(
        hub=HubSettings(state_dir=_STATE),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
        max_body_bytes=256 * 1024,
        # Every case comes from one institution: fuzz the API, not its rate limit.
        rate_limit_per_s=0,
    ),
    CollectorRegistry(),
    StaticRights({"dgme": list(EVENT_TYPES)}),
    catalog=Catalog.load(REPO_ROOT / "schemas"),
)
APP.state.gateway.reader = FakeReader()
TOKEN = APP.state.gateway.tokens.create("dgme")[1]
# The document is served on the admin app; the requests go to the public one.
# The referral and indicator reads relay to services this app runs without, where
# they answer the documented 503; the OpenAPI integration test runs them live.
schema = schemathesis.openapi.from_asgi("/openapi.json", APP.state.admin).exclude(
    path_regex=RELAYED_PATHS
)
schema.app = APP


@pytest.fixture(scope="module", autouse=True)
def _cleanup() -> Iterator[None]:
    yield
    asgi.shutdown_lifespans()
    shutil.rmtree(_STATE, ignore_errors=True)


@schema.parametrize()
@settings(
    max_examples=40,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)
def test_no_request_the_schema_allows_or_breaks_gets_a_server_error(
    case: schemathesis.Case[Any],
) -> None:
    response = case.call(headers={"Authorization": f"Bearer {TOKEN}"})

    assert response.status_code < 500, (case.method, case.path, response.status_code)
    if response.status_code >= 400:
        assert response.headers["content-type"] == ["application/problem+json"]
