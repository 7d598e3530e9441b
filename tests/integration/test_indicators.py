"""The indicators service on a real broker, fed by a real router with simulated traffic.

The demo's traffic (the simulator, every event type) goes through the router; the
indicators service counts what the policy delivers to it. Its counts must equal a
reference count of the same deliveries (worked out here from the policy and the
catalogue's filters as plain JMESPath), read twice they must not change, every
aggregate grant must get a table, and through the gateway an institution without
an aggregate grant gets 403 while one with a grant gets JSON and HXL CSV that the
reference HXL library reads. The traffic happened forty days ago, in periods that
are closed: once counted, they are released, and only released periods are
published; an event that arrives after its period was released moves no table.
"""

from __future__ import annotations

import asyncio
import io
import json
import time
import urllib.error
import urllib.request
import uuid
from collections import Counter
from collections.abc import AsyncIterator, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import hxl  # type: ignore[import-untyped]
import jmespath
import pytest
import pytest_asyncio
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.gateway.app import build_app
from services.gateway.rights import load_rights
from services.gateway.settings import GatewaySettings
from services.indicators.app import IndicatorsService
from services.indicators.counting import LOCAL, occurred_at, period_label
from services.indicators.rebuild import differences, rebuild
from services.indicators.settings import IndicatorsSettings
from services.indicators.store import Store
from services.kafkalocal import LocalKafka, LocalKafkaError
from services.router.app import RouterService
from services.runtime import pubsub
from services.runtime.embedded import free_port
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings
from services.sim.traffic import Traffic
from tests.support.router import running_router

pytestmark = pytest.mark.integration
EVENTS = 700
# Its first 700 events hold every event type, a disaster wave among them.
SEED = 2
RECIPIENT = "hub_indicators"


def _ids(value: str) -> str:
    return str(uuid.uuid5(uuid.NAMESPACE_URL, value))


@pytest.fixture(scope="module")
def own_kafka(tmp_path_factory: pytest.TempPathFactory) -> Iterator[KafkaSettings]:
    """An Apache Kafka node of this module's own.

    The counts must hold exactly this module's traffic: on the session's node a
    router of a fresh group would route again every event earlier modules left on
    ``hub.in.*``, and ``hub_indicators`` receives a view of most of them.
    """
    node = LocalKafka(
        tmp_path_factory.mktemp("indicators-kafka"), port_base=0, heap="384m"
    )
    try:
        node.start()
    except LocalKafkaError as e:
        pytest.fail(f"Apache Kafka could not be started: {e}", pytrace=False)
    try:
        yield node.settings()
    finally:
        node.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def router(
    own_kafka: KafkaSettings, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[RouterService]:
    async with running_router(own_kafka, tmp_path_factory.mktemp("router")) as r:
        yield r


# The traffic's periods: closed, due for release (forty days back).
BACK = timedelta(days=40)


def settings_for(kafka: KafkaSettings, state: Path, group: str) -> IndicatorsSettings:
    return IndicatorsSettings(
        group_id=group,
        port=free_port(),
        hub=HubSettings(state_dir=state),
        kafka=kafka,
        # The tests release when they choose (IndicatorsService.release_due).
        release_seconds=3600,
    )


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def indicators(
    router: RouterService,
    own_kafka: KafkaSettings,
    tmp_path_factory: pytest.TempPathFactory,
) -> AsyncIterator[IndicatorsService]:
    del router
    group = f"{RECIPIENT}.t-{uuid.uuid4().hex[:8]}"
    service = IndicatorsService(
        settings_for(own_kafka, tmp_path_factory.mktemp("indicators"), group),
        CollectorRegistry(),
    )
    await service.start()
    yield service
    await service.stop()


@pytest_asyncio.fixture(scope="module", loop_scope="session")
async def traffic(
    indicators: IndicatorsService, own_kafka: KafkaSettings
) -> list[tuple[str, dict[str, Any]]]:
    """The demo's traffic, published; what the policy delivers to the service."""
    catalog = indicators.catalog
    now = datetime.now(UTC) - BACK
    events = Traffic(SEED, lambda: now, bad_share=0.0).take(EVENTS)
    prepared = [pubsub.prepare(catalog, e.event_type, e.source, e.body) for e in events]
    await pubsub.send_all(own_kafka, prepared)
    delivered = []
    for e in events:
        datum = codec_for(catalog.get(e.event_type)).to_datum(e.body)
        for decision in indicators.policy.decide(e.event_type, datum):
            if decision.recipient == RECIPIENT and decision.delivered:
                projected = decision.projection.apply(datum, None, _ids)
                delivered.append((e.event_type, projected))
    await _until_counted(indicators, len(delivered))
    await _until_released(indicators)
    return delivered


async def _until_released(service: IndicatorsService) -> None:
    """Release the closed periods, once the service has read everything."""
    deadline = time.monotonic() + 60
    while not await service.release_due():
        assert time.monotonic() < deadline, "the closed periods were not released"
        await asyncio.sleep(0.25)


async def _until_counted(service: IndicatorsService, expected: int) -> None:
    deadline = time.monotonic() + 180
    while time.monotonic() < deadline:
        if service.counted >= expected:
            return
        await asyncio.sleep(0.25)
    raise AssertionError(f"counted {service.counted} of {expected} deliveries")


def _reference(
    service: IndicatorsService, delivered: list[tuple[str, dict[str, Any]]]
) -> Counter[tuple[str, str]]:
    """Events per (indicator, period), counted the simple way."""
    counts: Counter[tuple[str, str]] = Counter()
    for indicator in service.catalogue.indicators.values():
        for event_type, datum in delivered:
            if event_type != indicator.event_type:
                continue
            if indicator.filter_text and not jmespath.search(
                indicator.filter_text, datum
            ):
                continue
            at = occurred_at(datum)
            assert at is not None
            day = at.astimezone(LOCAL).date()
            counts[(indicator.id, period_label(day, indicator.period))] += 1
    return counts


def _counted(service: IndicatorsService) -> Counter[tuple[str, str]]:
    store = Store.open(service.settings.db_file, readonly=True)
    try:
        out: Counter[tuple[str, str]] = Counter()
        for indicator in service.catalogue.indicators.values():
            for (day, _), n in store.day_counts(indicator.id).items():
                out[(indicator.id, period_label(day, indicator.period))] += n
        return out
    finally:
        store.close()


async def _get(service: IndicatorsService, path: str) -> tuple[int, bytes]:
    """GET from the service's port, off the event loop that serves it."""
    url = f"http://127.0.0.1:{service.settings.port}{path}"
    return await asyncio.to_thread(_fetch, url)


def _fetch(url: str) -> tuple[int, bytes]:
    try:
        with urllib.request.urlopen(url, timeout=10) as answer:
            return int(answer.status), answer.read()
    except urllib.error.HTTPError as e:
        return int(e.code), e.read()


async def test_the_demo_traffic_is_counted_exactly_once_per_event(
    indicators: IndicatorsService, traffic: list[tuple[str, dict[str, Any]]]
) -> None:
    assert {t for t, _ in traffic} >= {
        "return_arrival", "border_crossing", "displacement_registration", "referral"
    }  # fmt: skip
    await asyncio.sleep(1.0)  # nothing more arrives: the router delivers once
    assert indicators.counted == len(traffic)
    assert _counted(indicators) == _reference(indicators, traffic)


async def test_reading_the_topics_again_changes_no_count(
    indicators: IndicatorsService,
    traffic: list[tuple[str, dict[str, Any]]],
    own_kafka: KafkaSettings,
) -> None:
    before = _counted(indicators)
    # A second consumer group on the same database reads everything again.
    registry = CollectorRegistry()
    again = IndicatorsService(
        settings_for(
            own_kafka,
            indicators.settings.hub.state_dir,
            f"{RECIPIENT}.again-{uuid.uuid4().hex[:8]}",
        ).model_copy(update={"db_path": indicators.settings.db_file}),
        registry,
    )
    await again.start()
    try:
        deadline = time.monotonic() + 120
        while (
            registry.get_sample_value("puente_indicators_duplicates_total") or 0
        ) < len(traffic):
            assert time.monotonic() < deadline, "the topics were not read again"
            await asyncio.sleep(0.25)
        assert again.counted == 0
        assert _counted(again) == before
    finally:
        await again.stop()


async def test_a_rebuild_from_the_topics_gives_the_same_counts(
    indicators: IndicatorsService,
    traffic: list[tuple[str, dict[str, Any]]],
    own_kafka: KafkaSettings,
    tmp_path: Path,
) -> None:
    target = tmp_path / "rebuilt.sqlite"
    done = await rebuild(
        own_kafka,
        indicators.catalog,
        indicators.catalogue,
        indicators.topics,
        target,
        releases_from=indicators.settings.db_file,
    )
    assert (done.records, done.counted, done.unreadable) == (
        len(traffic),
        len(traffic),
        0,
    )
    live = Store.open(indicators.settings.db_file, readonly=True)
    rebuilt = Store.open(target, readonly=True)
    try:
        assert differences(live, rebuilt, indicators.catalogue) == []
    finally:
        live.close()
        rebuilt.close()


async def test_every_aggregate_grant_gets_a_table_with_data(
    indicators: IndicatorsService, traffic: list[tuple[str, dict[str, Any]]]
) -> None:
    del traffic
    for grant in indicators.policy.aggregates:
        readable = [
            i
            for i in indicators.catalogue.readable_by(grant.recipient)
            if i.event_type in grant.event_types
        ]
        assert readable, f"{grant.recipient} reads no indicator of {grant.event_types}"
        totals = []
        for indicator in readable:
            status, body = await _get(
                indicators, f"/v1/indicators/{indicator.id}?reader={grant.recipient}"
            )
            assert status == 200, body
            tables = json.loads(body)["tables"]
            totals += [t["cells"][0]["count"] for t in tables if t["cells"]]
        # events were counted for it: some total is published or suppressed (a few
        # events), not zero
        assert any(t != 0 for t in totals), (grant.recipient, grant.event_types, totals)


@pytest_asyncio.fixture(loop_scope="session")
async def gateway(
    indicators: IndicatorsService,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    catalog: Catalog,
) -> AsyncIterator[tuple[httpx.AsyncClient, dict[str, str]]]:
    """The gateway app, in process, pointed at the indicators service."""
    monkeypatch.setenv(
        "PUENTE_GATEWAY_INDICATORS_URL", f"http://127.0.0.1:{indicators.settings.port}"
    )
    settings = GatewaySettings(
        hub=HubSettings(state_dir=tmp_path),
        kafka=KafkaSettings(bootstrap_servers="127.0.0.1:9"),
    )
    rights = load_rights(REPO_ROOT / "deploy" / "policy", catalog)
    app = build_app(settings, CollectorRegistry(), rights, catalog=catalog)
    tokens = {who: app.state.gateway.tokens.create(who)[1] for who in ("bcr", "dgme")}
    async with (
        app.router.lifespan_context(app),
        httpx.AsyncClient(
            transport=httpx.ASGITransport(app), base_url="http://gateway", timeout=30
        ) as client,
    ):
        yield client, tokens


async def test_through_the_gateway_a_grant_reads_tables_and_no_grant_is_403(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
    traffic: list[tuple[str, dict[str, Any]]],
) -> None:
    del traffic
    client, tokens = gateway
    bcr = {"Authorization": f"Bearer {tokens['bcr']}"}
    dgme = {"Authorization": f"Bearer {tokens['dgme']}"}
    listed = await client.get("/v1/indicators", headers=bcr)
    assert listed.status_code == 200, listed.text
    assert "returns" in {i["id"] for i in listed.json()}

    table = await client.get("/v1/indicators/returns?by=department", headers=bcr)
    assert table.status_code == 200, table.text
    body = table.json()
    assert body["by"] == ["department"]
    assert body["disclosure_control"]["threshold"] == 5
    for cell in (c for t in body["tables"] for c in t["cells"]):
        assert cell["count"] is None or cell["count"] == 0 or cell["count"] >= 5

    assert (await client.get("/v1/indicators", headers=dgme)).status_code == 403
    refused = await client.get("/v1/indicators/returns", headers=dgme)
    assert refused.status_code == 403
    assert refused.json()["reason"] == "no_aggregate_grant"
    # returns has no breakdown by type of return (another indicator has)
    narrower = await client.get("/v1/indicators/returns?by=return_type", headers=bcr)
    assert narrower.status_code == 400

    csv = await client.get(
        "/v1/indicators/returns?by=sex", headers={**bcr, "Accept": "text/csv"}
    )
    assert csv.status_code == 200
    assert csv.headers["content-type"].startswith("text/csv")
    data = hxl.data(
        hxl.input.make_input(io.BytesIO(csv.content), hxl.input.InputOptions())
    )
    assert [c.display_tag for c in data.columns] == [
        "#date", "#date+start", "#date+end", "#gender+code",
        "#affected+returnees", "#meta+suppressed",
    ]  # fmt: skip
    totals = [r.get("#affected") for r in data if r.get("#gender") == "all"]
    assert any(t and int(t) >= 5 for t in totals), totals  # the released month
    assert all(t in {"", None} or int(t) == 0 or int(t) >= 5 for t in totals)


async def test_the_current_period_is_pending_and_a_late_event_moves_no_table(
    gateway: tuple[httpx.AsyncClient, dict[str, str]],
    indicators: IndicatorsService,
    traffic: list[tuple[str, dict[str, Any]]],
    own_kafka: KafkaSettings,
) -> None:
    client, tokens = gateway
    bcr = {"Authorization": f"Bearer {tokens['bcr']}"}
    today = datetime.now(LOCAL).date()
    current = await client.get(
        f"/v1/indicators/returns?from={today}&to={today}", headers=bcr
    )
    assert current.status_code == 200, current.text
    assert current.json()["tables"] == []
    assert [p["period"] for p in current.json()["pending"]] == [
        period_label(today, "month")
    ]
    released = (await client.get("/v1/indicators/returns?by=sex", headers=bcr)).json()
    assert released["tables"], released
    # More returns of the released month, recorded after its release.
    then = datetime.now(UTC) - BACK
    more = [
        e
        for e in Traffic(SEED + 1, lambda: then, bad_share=0.0).take(300)
        if e.event_type == "return_arrival"
    ][:20]
    assert more
    catalog = indicators.catalog
    prepared = [pubsub.prepare(catalog, e.event_type, e.source, e.body) for e in more]
    delivered = sum(
        1
        for e in more
        for d in indicators.policy.decide(
            e.event_type, codec_for(catalog.get(e.event_type)).to_datum(e.body)
        )
        if d.recipient == RECIPIENT and d.delivered
    )
    assert delivered
    before = indicators.counted
    await pubsub.send_all(own_kafka, prepared)
    await _until_counted(indicators, before + delivered)
    again = (await client.get("/v1/indicators/returns?by=sex", headers=bcr)).json()
    assert again == released
    store = Store.open(indicators.settings.db_file, readonly=True)
    try:
        assert store.late_events().get("returns", 0) >= delivered
    finally:
        store.close()
