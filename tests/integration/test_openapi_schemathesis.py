"""schemathesis, as a ministry developer would run it, finds nothing against the gateway.

The gateway runs for real (HTTP on a free port, its SQLite outbox, the relay to the
broker), with the referral tracker and the indicators service it relays reads to
running on the same broker, so those operations answer from live services rather
than their 503; schemathesis's own command line reads ``/openapi.json`` from the
admin port and sends every check it has (``--checks all``) at the public port, once
with a credential holding both scopes of a publishing institution, once at the
relayed reads with the read credential of an institution holding aggregate grants.
Any failure it reports (an undocumented status, a response that does not match its
schema, a schema-valid request refused, an invalid one accepted, a 405 without
``Allow``, ...) fails the test with schemathesis's own report.

``PUENTE_SCHEMATHESIS_EXAMPLES`` raises the examples per operation for a longer run
(the default keeps the test near half a minute).
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.gateway.app import GatewayService
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import Scope
from services.indicators.app import IndicatorsService
from services.indicators.settings import IndicatorsSettings
from services.policy import load_policy
from services.referrals.app import ReferralsService
from services.referrals.settings import ReferralsSettings
from services.runtime import topic_admin
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("PUENTE_SCHEMATHESIS_EXAMPLES", "6"))
ST = Path(sys.executable).with_name("st")
RELAYED = "^/v1/(referrals|indicators)"
# The one constraint OpenAPI cannot state: a table's range (from..to) spans at most
# 400 periods, a relation between two parameters, so a schema-valid request may
# be a 400 there. Everything else schemathesis checks as it would anywhere.
RANGE_CONFIG = """
[[operations]]
include-name = "GET /v1/indicators/{indicator_id}"
checks.positive_data_acceptance.expected-statuses = ["2xx", 400, 401, 403, 404, 429]
"""
# An institution whose aggregate grants read indicators (deploy/policy).
GRANTED = "bcr"


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayService]:
    """A gateway on the session's broker with the tracker and indicators it asks."""
    hub = HubSettings(state_dir=tmp_path_factory.mktemp("openapi-gateway"))
    catalog = Catalog.load(hub.schemas_dir)
    policy = load_policy(hub.policy_dir, catalog)
    wanted = topic_admin.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    await topic_admin.create(session_kafka, wanted)
    suffix = uuid.uuid4().hex[:8]
    tracker = ReferralsService(
        ReferralsSettings(
            group_id=f"hub_referrals.openapi-{suffix}",
            port=free_port(),
            check_seconds=3600,
            hub=HubSettings(state_dir=tmp_path_factory.mktemp("openapi-tracker")),
            kafka=session_kafka,
        ),
        CollectorRegistry(),
    )
    indicators = IndicatorsService(
        IndicatorsSettings(
            group_id=f"hub_indicators.openapi-{suffix}",
            port=free_port(),
            hub=HubSettings(state_dir=tmp_path_factory.mktemp("openapi-indicators")),
            kafka=session_kafka,
        ),
        CollectorRegistry(),
    )
    await tracker.start()
    await indicators.start()
    with pytest.MonkeyPatch.context() as env:
        # The gateway reads where the two services answer when it builds its routes.
        env.setenv(
            "PUENTE_GATEWAY_REFERRALS_URL", f"http://127.0.0.1:{tracker.settings.port}"
        )
        env.setenv(
            "PUENTE_GATEWAY_INDICATORS_URL",
            f"http://127.0.0.1:{indicators.settings.port}",
        )
        service = GatewayService(
            GatewaySettings(
                port=free_port(),
                admin_port=free_port(),
                hub=hub,
                kafka=session_kafka,
                rate_limit_per_s=0,
            ),
            CollectorRegistry(),
        )
    await service.start()
    yield service
    await service.stop()
    await indicators.stop()
    await tracker.stop()


async def schemathesis(
    service: GatewayService, token: str, *args: str, config_file: Path | None = None
) -> tuple[int, str]:
    """Run schemathesis's command line against ``service``; its exit code and report."""
    settings = service.settings
    config = ["--config-file", str(config_file)] if config_file else []
    process = await asyncio.create_subprocess_exec(
        str(ST),
        *config,
        "run",
        f"http://127.0.0.1:{settings.admin_port}/openapi.json",
        "--url",
        f"http://127.0.0.1:{settings.port}",
        "--header",
        f"Authorization: Bearer {token}",
        *args,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.STDOUT,
        env={**os.environ, "NO_COLOR": "1"},
        cwd=service.settings.hub.state_dir,  # its cache folder stays out of the tree
    )
    output, _ = await process.communicate()
    return await process.wait(), output.decode("utf-8", "replace")


@pytest.mark.timeout(300)
async def test_schemathesis_with_every_check_finds_no_failure_in_the_gateway(
    gateway: GatewayService,
) -> None:
    _, token = gateway.gateway.tokens.create("dgme", {Scope.PUBLISH, Scope.READ})
    code, report = await schemathesis(
        gateway,
        token,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES),
        "--seed",
        "19",
        "--request-timeout",
        "30",
    )

    assert_no_failure(code, report)


@pytest.mark.timeout(300)
async def test_schemathesis_finds_no_failure_in_the_reads_relayed_to_live_services(
    gateway: GatewayService,
) -> None:
    _, token = gateway.gateway.tokens.create(GRANTED, {Scope.READ})
    listed = await read_as(gateway, token, "/v1/indicators")
    config = gateway.settings.hub.state_dir / "schemathesis.toml"
    config.write_text(RANGE_CONFIG, encoding="utf-8")
    code, report = await schemathesis(
        gateway,
        token,
        "--include-path-regex",
        RELAYED,
        "--checks",
        "all",
        "--max-examples",
        str(EXAMPLES * 2),
        "--seed",
        "19",
        "--request-timeout",
        "30",
        config_file=config,
    )

    assert listed.status_code == 200, listed.text  # live, not the 503 of a dead link
    assert listed.json(), "the granted institution reads at least one indicator"
    assert_no_failure(code, report)


async def read_as(service: GatewayService, token: str, path: str) -> httpx.Response:
    """GET ``path`` from the gateway's public port with ``token``."""
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{service.settings.port}", timeout=30
    ) as http:
        return await http.get(path, headers={"Authorization": f"Bearer {token}"})


def assert_no_failure(code: int, report: str) -> None:
    """schemathesis exited 0 and its summary says its cases passed."""
    summary = [line for line in report.splitlines() if "generated" in line]
    print(report[-1500:])  # the figures, shown with pytest -rP
    assert code == 0, report[-6000:]
    assert summary, report[-2000:]
    assert "passed" in summary[-1], summary


async def test_a_method_the_path_does_not_answer_is_a_405_naming_the_allowed_ones(
    gateway: GatewayService,
) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.port}", timeout=30
    ) as http:
        answer = await http.delete("/health")
        posted = await http.put("/v1/events/referral", json={})

    assert answer.status_code == 405
    assert answer.headers["allow"] == "GET"
    assert answer.headers["content-type"] == "application/problem+json"
    assert posted.status_code == 405
    assert "POST" in posted.headers["allow"]


async def test_the_document_says_what_each_publish_operation_answers(
    gateway: GatewayService,
) -> None:
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.admin_port}", timeout=30
    ) as http:
        document = (await http.get("/openapi.json")).json()

    post = document["paths"]["/v1/events/referral"]["post"]
    statuses = set(post["responses"])
    problem = post["responses"]["422"]["content"]["application/problem+json"]
    schemas = document["components"]["schemas"]
    envelope = schemas["ReferralLifecycleEnvelope"]["properties"]["event_type"]
    cursor = next(
        p
        for p in document["paths"]["/v1/rejections"]["get"]["parameters"]
        if p["name"] == "cursor"
    )

    assert statuses == {
        "200",
        "202",
        "400",
        "401",
        "403",
        "409",
        "413",
        "415",
        "422",
        "429",
        "503",
    }
    assert problem["schema"] == {"$ref": "#/components/schemas/Problem"}
    assert post["responses"]["202"]["content"]["application/json"]["schema"] == {
        "$ref": "#/components/schemas/Receipt"
    }
    assert envelope["enum"] == ["referral"]
    assert "HTTPValidationError" not in schemas
    assert "pattern" in str(cursor["schema"])
