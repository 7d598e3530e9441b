"""schemathesis, as a ministry developer would run it, finds nothing against the gateway.

The gateway runs for real (HTTP on a free port, its SQLite outbox, the relay to the
broker); schemathesis's own command line reads ``/openapi.json`` from the admin port
and sends every check it has (``--checks all``) at the public port with a credential
holding both scopes. Any failure it reports (an undocumented status, a response that
does not match its schema, a schema-valid request refused, an invalid one accepted,
a 405 without ``Allow``, ...) fails the test with schemathesis's own report.

``PUENTE_SCHEMATHESIS_EXAMPLES`` raises the examples per operation for a longer run
(the default keeps the test near half a minute).
"""

from __future__ import annotations

import asyncio
import os
import sys
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
from services.policy import load_policy
from services.runtime import topic_admin
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings

pytestmark = pytest.mark.integration
EXAMPLES = int(os.environ.get("PUENTE_SCHEMATHESIS_EXAMPLES", "6"))
ST = Path(sys.executable).with_name("st")


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def gateway(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[GatewayService]:
    """A gateway on the session's broker, every hub topic created beforehand."""
    hub = HubSettings(state_dir=tmp_path_factory.mktemp("openapi-gateway"))
    catalog = Catalog.load(hub.schemas_dir)
    policy = load_policy(hub.policy_dir, catalog)
    wanted = topic_admin.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    await topic_admin.create(session_kafka, wanted)
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


async def schemathesis(
    service: GatewayService, token: str, *args: str
) -> tuple[int, str]:
    """Run schemathesis's command line against ``service``; its exit code and report."""
    settings = service.settings
    process = await asyncio.create_subprocess_exec(
        str(ST),
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

    summary = [line for line in report.splitlines() if "generated" in line]
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
