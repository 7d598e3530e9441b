"""The gateway under faults: the broker down and back empty; the gateway killed -9.

The broker that goes down and comes back empty is an embedded broker of the test's
own (only it forgets everything on a restart); the kill test relays to the session's
Apache Kafka.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sqlite3
import subprocess
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway.app import GatewayService
from services.gateway.deliveries import TopicReader
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import TokenStore
from services.runtime.embedded import EmbeddedBroker, free_port
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings
from tests.support.kafka import kafka_env

pytestmark = [pytest.mark.integration, pytest.mark.slow]
TOPIC = "hub.in.dgme.return_arrival"


async def read_ids(kafka: KafkaSettings, topic: str) -> list[str]:
    """Every ce_id on ``topic``, partition by partition, in offset order."""
    reader = TopicReader(kafka, wait_ms=2000)
    cursor: dict[int, int] = {}
    ids: list[str] = []
    # On a loaded machine a fresh broker's first fetches can come back empty.
    patience = time.monotonic() + 20
    try:
        while True:
            page = await reader.read(topic, cursor, 1000)
            if not page.records:
                if ids or time.monotonic() > patience:
                    return ids
                continue
            for record in sorted(page.records, key=lambda r: (r.partition, r.offset)):
                ids.extend(v.decode() for k, v in record.headers if k == "ce_id")
            cursor = page.cursor
    finally:
        await reader.close()


async def wait_for(check: Any, deadline_s: float) -> bool:
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if await check():
            return True
        await asyncio.sleep(0.2)
    return False


def first_occurrences(seen: list[str]) -> list[str]:
    return list(dict.fromkeys(seen))


@pytest.fixture
async def gateway_on(
    own_broker: EmbeddedBroker, tmp_path: Path
) -> AsyncIterator[GatewayService]:
    kafka = KafkaSettings(
        bootstrap_servers=own_broker.bootstrap_servers, request_timeout_ms=5000
    )
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        # One client posts as fast as it can: this test is about the broker.
        rate_limit_per_s=0,
        hub=HubSettings(state_dir=tmp_path),
        kafka=kafka,
        # One partition: the order of the whole topic is checkable.
        topics=TopicSettings(inbound_partitions=1),
        relay_backoff_max_s=1.0,
    )
    service = GatewayService(
        settings, CollectorRegistry(), StaticRights({"dgme": ["return_arrival"]})
    )
    await service.start()
    yield service
    await service.stop()


async def test_while_the_broker_is_down_every_post_is_accepted_and_later_relayed_in_order(
    gateway_on: GatewayService,
    own_broker: EmbeddedBroker,
    catalog: Catalog,
    record_property: Any,
    capsys: pytest.CaptureFixture[str],
) -> None:
    gateway = gateway_on.gateway
    _, token = gateway.tokens.create("dgme")
    entry = catalog.get("return_arrival")
    url = f"http://127.0.0.1:{gateway_on.settings.port}"
    async with httpx.AsyncClient(
        base_url=url, headers={"Authorization": f"Bearer {token}"}, timeout=30
    ) as http:
        warm = await http.post(
            "/v1/events/return_arrival", json=minimal_event(entry, "dgme")
        )
        assert warm.status_code == 202
        assert await wait_for(lambda: _async(gateway.outbox.unsent_count == 0), 30)

        own_broker.stop()
        accepted: list[str] = []
        for _ in range(1000):
            event = minimal_event(entry, "dgme")
            response = await http.post("/v1/events/return_arrival", json=event)
            assert response.status_code == 202, response.text
            accepted.append(event["envelope"]["event_id"])
        assert gateway.outbox.unsent_count == 1000

        own_broker.start()  # same port, and empty: it keeps nothing across a restart
        drained = await wait_for(lambda: _async(gateway.outbox.unsent_count == 0), 90)
        admin = f"http://127.0.0.1:{gateway_on.settings.admin_port}/metrics"
        metrics = (await http.get(admin)).text

    assert drained, f"{gateway.outbox.unsent_count} events still unsent"
    # Read with the gateway's own reader, as an institution's GET would.
    seen = await read_ids(gateway_on.settings.kafka, TOPIC)
    assert first_occurrences(seen) == accepted
    duplicates = len(seen) - len(set(seen))
    errors = _metric(metrics, "puente_relay_errors_total")
    record_property("duplicates", duplicates)
    with capsys.disabled():
        print(f"\nbroker outage: 1000 accepted, {len(set(seen))} relayed in order, "
              f"{duplicates} duplicates, {errors:.0f} relay errors")  # fmt: skip
    assert errors >= 1


async def _async(value: bool) -> bool:
    return value


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[-1])
    return 0.0


def _children(pid: int) -> set[int]:
    """Processes whose parent is ``pid`` (Linux /proc)."""
    found = set()
    for stat in Path("/proc").glob("[0-9]*/stat"):
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = stat.read_text().rsplit(")", 1)[1].split()
            if int(fields[1]) == pid:
                found.add(int(stat.parent.name))
    return found


def _alive(pids: set[int]) -> set[int]:
    """The ones still running (zombies, which nobody may reap here, count as gone)."""
    running = set()
    for pid in pids:
        with contextlib.suppress(OSError, IndexError):
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
            if state != "Z":
                running.add(pid)
    return running


def _start(state: Path, port: int, kafka: KafkaSettings) -> subprocess.Popen[bytes]:
    env = {
        **os.environ,
        **kafka_env(kafka),
        "PUENTE_STATE_DIR": str(state),
        "PUENTE_GATEWAY_PORT": str(port),
        "PUENTE_GATEWAY_ADMIN_PORT": str(free_port()),
        "PUENTE_GATEWAY_RATE_LIMIT_PER_S": "0",
        "PUENTE_LOG_LEVEL": "WARNING",
    }
    return subprocess.Popen(
        [sys.executable, "-m", "services.gateway.testserver", "dgme=return_arrival"],
        env=env,
    )


async def _ready(http: httpx.AsyncClient, process: subprocess.Popen[bytes]) -> None:
    async def check() -> bool:
        assert process.poll() is None, "gateway exited"
        try:
            return (await http.get("/health")).status_code == 200
        except httpx.TransportError:
            return False

    assert await wait_for(check, 30)


async def test_a_gateway_killed_right_after_a_burst_of_202s_loses_nothing(
    kafka: KafkaSettings,
    tmp_path: Path,
    catalog: Catalog,
    capsys: pytest.CaptureFixture[str],
) -> None:
    store = TokenStore(tmp_path / "gateway" / "tokens.sqlite")
    _, token = store.create("dgme")
    store.close()
    port = free_port()
    entry = catalog.get("return_arrival")
    events = [minimal_event(entry, "dgme") for _ in range(600)]
    async with httpx.AsyncClient(
        base_url=f"http://127.0.0.1:{port}",
        headers={"Authorization": f"Bearer {token}"},
        timeout=30,
        limits=httpx.Limits(max_connections=16),
    ) as http:
        # First life: no broker reachable, so every accepted event is still only in the
        # outbox when the process dies (the relay had no chance to send any).
        process = _start(
            tmp_path, port, KafkaSettings(bootstrap_servers=f"127.0.0.1:{free_port()}")
        )
        try:
            await _ready(http, process)
            responses = await asyncio.gather(
                *(http.post("/v1/events/return_arrival", json=e) for e in events)
            )
            workers = _children(process.pid)
            process.send_signal(signal.SIGKILL)
            process.wait(10)
        finally:
            if process.poll() is None:
                process.kill()
        accepted = {
            e["envelope"]["event_id"]
            for e, r in zip(events, responses, strict=True)
            if r.status_code == 202
        }
        assert len(accepted) == len(events)
        with sqlite3.connect(tmp_path / "gateway" / "outbox.sqlite") as db:
            stored = {row[0] for row in db.execute("SELECT event_id FROM outbox")}
            (unsent,) = db.execute(
                "SELECT COUNT(*) FROM outbox WHERE sent_at IS NULL"
            ).fetchone()
        assert accepted <= stored
        assert unsent == len(accepted)
        # Its batch workers (and multiprocessing's tracker) do not outlive it.
        assert workers
        assert await wait_for(lambda: _async(not _alive(workers)), 10), _alive(workers)

        restarted = _start(tmp_path, port, kafka)
        try:
            await _ready(http, restarted)

            async def empty() -> bool:
                return bool((await http.get("/health")).json()["outbox_depth"] == 0)

            assert await wait_for(empty, 60)
        finally:
            restarted.terminate()
            restarted.wait(15)

    seen = [i for i in await read_ids(kafka, TOPIC) if i in accepted]
    assert set(seen) == accepted
    with capsys.disabled():
        print(f"\nkill -9: {len(accepted)} accepted, {unsent} unsent at the kill, "
              "all relayed after restart, "
              f"{len(seen) - len(set(seen))} duplicates")  # fmt: skip
