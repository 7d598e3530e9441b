"""Every metric a dashboard panel or an alert queries is really exported by a service.

Starts every available service the way ``puente up`` does (``services.hub``)
on the embedded broker, pushes accepted, duplicate, rejected and HTTP-posted events
through, scrapes each ``/metrics`` and checks the names the PromQL of
``deploy/grafana`` and ``deploy/prometheus/rules`` uses.
"""

from __future__ import annotations

import asyncio
import json
import re
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from typing import Any, Final

import httpx
import pytest
import pytest_asyncio
import yaml
from prometheus_client.parser import text_string_to_metric_families

from services import hub
from services.contracts import topics
from services.contracts.catalog import Catalog
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, KafkaSettings
from tests.support.kafka import kafka_env, produce

pytestmark = pytest.mark.integration
DEPLOY: Final = REPO_ROOT / "deploy"
EXAMPLES: Final = REPO_ROOT / "examples"
NAME: Final = re.compile(r"\b(puente_\w+|faststream_\w+|up)\b")
SELECTOR: Final = re.compile(r"\b(puente_\w+|faststream_\w+|up)\s*\{([^}]*)\}")
JOB: Final = re.compile(r'\bjob\s*=~?\s*"([^"]+)"')
# Series that exist once the traffic below went through; scraping waits for them.
AFTER_TRAFFIC: Final = {
    "router": {
        "puente_deliveries_total",
        "puente_events_rejected_total",
        "puente_events_duplicate_total",
        "puente_delivery_latency_seconds_bucket",
        "puente_consumer_lag",
    },
    "gateway": {"puente_gateway_requests_total", "puente_events_accepted_total"},
}

Running = dict[str, hub.Built]


@pytest.fixture(scope="module")
def environment(
    session_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[None]:
    """What a container of the stack would set: broker, state dir, free ports."""
    suffix = uuid.uuid4().hex[:8]
    with pytest.MonkeyPatch.context() as patch:
        for name, value in kafka_env(session_kafka).items():
            patch.setenv(name, value)
        patch.setenv("PUENTE_STATE_DIR", str(tmp_path_factory.mktemp("metrics-state")))
        patch.setenv("PUENTE_ROUTER_GROUP_ID", f"metrics-router-{suffix}")
        patch.setenv("PUENTE_AUDIT_GROUP_ID", f"metrics-audit-{suffix}")
        for spec in hub.available():
            patch.setenv(f"PUENTE_{spec.name.upper()}_PORT", str(free_port()))
        patch.setenv("PUENTE_GATEWAY_ADMIN_PORT", str(free_port()))
        yield


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def running(environment: None) -> AsyncIterator[Running]:
    """Every available service, built from the environment and started in order."""
    del environment
    built = [hub.build(spec) for spec in hub.available()]
    started = []
    try:
        for item in built:
            await item.service.start()
            started.append(item)
        yield {item.spec.name: item for item in built}
    finally:
        for item in reversed(started):
            await item.service.stop()


async def test_every_metric_the_dashboards_and_alerts_query_is_exported(
    running: Running, kafka: KafkaSettings, catalog: Catalog
) -> None:
    assert {"router"} <= set(running), "the router must be available"
    await push_traffic(running, kafka, catalog)
    exported = await scrape_until_complete(running)

    everywhere = set().union(*exported.values())
    queried = queries()
    assert len(queried) > 20
    missing: dict[str, list[str]] = {}
    for where, expr in queried:
        for name in set(NAME.findall(expr)) - {"up"}:
            if name not in everywhere:
                missing.setdefault(name, []).append(where)
        for name, labels in SELECTOR.findall(expr):
            for job in jobs(labels):
                if name == "up":
                    assert job in running, f"{where}: up of {job}, which is not a service"
                elif job in exported and name not in exported[job]:
                    missing.setdefault(f"{name} on {job}", []).append(where)
    assert not missing, f"queried but not exported: {missing}"


def queries() -> list[tuple[str, str]]:
    """(where, PromQL) of every dashboard target and variable, and every rule."""
    found: list[tuple[str, str]] = []
    for path in sorted((DEPLOY / "grafana" / "dashboards").glob("*.json")):
        board = json.loads(path.read_text(encoding="utf-8"))
        found.extend(
            (f"{path.name}: {panel['title']}", target["expr"])
            for panel in board["panels"]
            for target in panel.get("targets", [])
        )
        found.extend(
            (f"{path.name}: ${variable['name']}", variable["definition"])
            for variable in board.get("templating", {}).get("list", [])
        )
    for path in sorted((DEPLOY / "prometheus" / "rules").glob("*.yml")):
        for group in yaml.safe_load(path.read_text(encoding="utf-8"))["groups"]:
            for rule in group["rules"]:
                name = rule.get("alert") or rule.get("record")
                found.append((f"{path.name}: {name}", rule["expr"]))
                # Runbook text names metrics too; they must exist as well.
                text = " ".join(rule.get("annotations", {}).values())
                found.extend((f"{path.name}: {name} text", n) for n in NAME.findall(text))
    return found


def jobs(labels: str) -> list[str]:
    return [job for match in JOB.findall(labels) for job in match.split("|")]


async def push_traffic(running: Running, kafka: KafkaSettings, catalog: Catalog) -> None:
    """An accepted event (twice: the second is a duplicate), garbage, and an HTTP POST."""
    event = example("return_arrival")
    source = event["envelope"]["source_institution_id"]
    prepared = pubsub.prepare(catalog, "return_arrival", source, event)
    await pubsub.send_all(kafka, [prepared])
    await pubsub.send_all(kafka, [prepared])
    await produce(
        kafka, [(topics.inbound(source, "return_arrival"), None, b"garbage", [])]
    )
    gateway = running.get("gateway")
    if gateway is None:
        return
    _, token = gateway.service.gateway.tokens.create(source)
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{gateway.settings.port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
    ) as http:
        response = await http.post(
            "/v1/events/return_arrival", json=example("return_arrival")
        )
        assert response.status_code == 202, response.text


async def scrape_until_complete(
    running: Running, timeout: float = 60
) -> dict[str, set[str]]:
    """Sample names per service, once the traffic's series have appeared."""
    deadline = time.monotonic() + timeout
    async with httpx.AsyncClient(timeout=10) as http:
        while True:
            exported = {name: await scrape(http, item) for name, item in running.items()}
            waiting = {
                name: wanted - exported[name]
                for name, wanted in AFTER_TRAFFIC.items()
                if name in exported and wanted - exported[name]
            }
            if not waiting:
                return exported
            assert time.monotonic() < deadline, f"series never appeared: {waiting}"
            await asyncio.sleep(0.5)


async def scrape(http: httpx.AsyncClient, item: hub.Built) -> set[str]:
    # The gateway serves its metrics on its admin port.
    port = getattr(item.settings, "admin_port", item.settings.port)
    response = await http.get(f"http://127.0.0.1:{port}/metrics")
    assert response.status_code == 200, f"{item.spec.name}: {response.status_code}"
    return {
        sample.name
        for family in text_string_to_metric_families(response.text)
        for sample in family.samples
    }


def example(name: str) -> Any:
    event = json.loads((EXAMPLES / f"{name}.json").read_text(encoding="utf-8"))
    event["envelope"]["event_id"] = str(uuid.uuid4())
    return event
