"""Brokers that fail: kill -9 Apache Kafka nodes under a running hub.

On three KRaft nodes (replication 3, min.insync.replicas 2) the router, the gateway
(its outbox relay) and the audit service run as their own processes, as an operator
runs them, while events stream in: through the gateway's HTTP API (202 = accepted)
and straight to the inbound topics (acknowledged produce). Mid-stream the leader of
a busy inbound partition is killed with SIGKILL; once it is back and in sync, the
active controller of the metadata quorum is killed too. Afterwards every accepted
event must have been routed, every entitled delivery and every audit entry must
appear exactly once to ``read_committed`` readers, and the audit ledger must verify.

Another test kills a single node and restarts it: every acknowledged record is
still there (the embedded broker keeps nothing across a restart).

Set ``PUENTE_TEST_FAILOVER_RATE`` (events/s offered, default 120) to load it more.
"""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from collections.abc import AsyncIterator, Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.errors import KafkaError
from prometheus_client import CollectorRegistry

from services.audit.api import reading, verify_ledger
from services.audit.settings import AuditSettings
from services.audit.trust import pinned_keys
from services.contracts import topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.contracts.samples import minimal_event
from services.gateway.app import GatewayService
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.gateway.tokens import TokenStore
from services.kafkalocal import LocalKafka
from services.policy import Policy, SubjectKeys, load_policy
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.kafka import consumer_config, probe_idempotence, producer_config
from services.runtime.settings import REPO_ROOT, HubSettings, KafkaSettings, TopicSettings
from services.sim.traffic import SimEvent, Traffic
from tests.support.kafka import collect, header, kafka_env
from tests.support.kafka_cluster import (
    active_controller,
    index_of,
    kafka_cluster,
    leader_of,
    until_in_sync,
)

__all__ = ["kafka_cluster"]

pytestmark = [pytest.mark.fault, pytest.mark.slow, pytest.mark.timeout(420)]

RATE = float(os.environ.get("PUENTE_TEST_FAILOVER_RATE", "120"))
TICK = 0.1  # seconds between sends of each stream
GATEWAY_SOURCE = "dgme"  # its events go through the gateway; every other source direct
BUSY = topics.inbound("dgme", "border_crossing")  # dgme's busiest inbound topic
# Events routed on the busy topic after a kill that show its new leader serves.
RECOVERED_AFTER = 30
REPLICATION = 3


# The single node first: the three-node cluster starts after it is gone.


@pytest.fixture
async def single_node(tmp_path: Path) -> AsyncIterator[LocalKafka]:
    node = LocalKafka(tmp_path / "kafka", brokers=1, port_base=0, heap="384m")
    await asyncio.to_thread(node.start)
    try:
        yield node
    finally:
        await asyncio.to_thread(node.stop)


async def test_a_single_broker_killed_and_restarted_keeps_every_acknowledged_record(
    single_node: LocalKafka, tmp_path: Path
) -> None:
    kafka = single_node.settings()
    # The producer's records on one topic, the gateway's (at-least-once) on another.
    topic, posted = "hub.in.dgme.border_crossing", "hub.in.dgme.return_arrival"
    await runtime_topics.create(kafka, {topic: 2, posted: 2})
    assert producer_config(kafka, "check")["enable_idempotence"] is True
    producer = AIOKafkaProducer(**producer_config(kafka, "test-single-node"))
    await producer.start()
    registry = CollectorRegistry()
    gateway = await start_gateway(kafka, tmp_path, registry)
    try:
        accepted = await post(gateway, 100)
        acked, _ = await acknowledged(*await send(producer, topic, range(2000)))
        # Mid-stream: these are in the air when the broker dies; the producer keeps
        # them and sends them again once it is back.
        values, futures = await send(producer, topic, range(2000, 2400))
        single_node.kill(0)
        killed = time.monotonic()
        in_air = sum(not f.done() for f in futures)
        assert not single_node.running(0)
        # The gateway accepts on, and its relay shows the outage (an idempotent
        # producer waits for the broker instead of failing: the relay bounds that).
        accepted |= await post(gateway, 200)
        await until(lambda: relay_errors(registry) > 0, 60, "the relay to report")
        await asyncio.to_thread(single_node.restart, 0)
        assert single_node.running(0)
        restarted = time.monotonic() - killed
        more, failed = await asyncio.wait_for(acknowledged(values, futures), 90)
        acked |= more
        outbox = gateway.gateway.outbox
        await until(lambda: outbox.unsent_count == 0, 90, "the outbox to drain")
        errors = relay_errors(registry)
    finally:
        if not single_node.running(0):  # a failed wait: the producer needs it to stop
            await asyncio.to_thread(single_node.restart, 0)
        await gateway.stop()
        await producer.stop()

    found = await read_back(kafka, topic, acked)
    lost = [value for value, where in acked.items() if where not in found.get(value, [])]
    doubled = sum(len(positions) - 1 for positions in found.values())
    relayed = await collect(
        kafka, [posted], lambda r: header(r, "ce_id") in accepted,
        expected=len(accepted), timeout=60,
    )  # fmt: skip
    print(
        f"\nsingle node kill -9: {len(acked)} records acknowledged ({in_air} in the "
        f"air at the kill, {failed} failed), {len(acked) - len(lost)} kept at their "
        f"offsets, {doubled} doubled; the node was back in {restarted:.1f} s; "
        f"{len(accepted)} events accepted by the gateway, {errors:.0f} relay errors "
        f"reported, {len({header(r, 'ce_id') for r in relayed})} relayed "
        f"({len(relayed)} records)"
    )
    assert in_air > 0, "every send was acknowledged before the kill: it proves little"
    assert not lost, f"{len(lost)} acknowledged records lost, e.g. {lost[:3]}"
    assert doubled == 0, "the idempotent producer's resends were stored twice"
    assert {header(r, "ce_id") for r in relayed} == accepted


async def start_gateway(
    kafka: KafkaSettings, state_dir: Path, registry: CollectorRegistry
) -> GatewayService:
    """The gateway in this process, its acknowledgement wait bounded to 3 s."""
    settings = GatewaySettings(
        port=free_port(),
        admin_port=free_port(),
        rate_limit_per_s=0,
        prepare_workers=0,
        relay_backoff_max_s=1.0,
        hub=HubSettings(state_dir=state_dir),
        kafka=kafka.model_copy(update={"request_timeout_ms": 3000}),
        topics=TopicSettings(inbound_partitions=2),
    )
    service = GatewayService(
        settings, registry, StaticRights({"dgme": ["return_arrival"]})
    )
    await service.start()
    return service


async def post(service: GatewayService, count: int) -> set[str]:
    """POST ``count`` events as dgme; the ids of those accepted (202)."""
    _, token = service.gateway.tokens.create("dgme")
    entry = service.gateway.catalog.get("return_arrival")
    events = [minimal_event(entry, "dgme") for _ in range(count)]
    url = f"http://127.0.0.1:{service.settings.port}"
    auth = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        response = await http.post("/v1/events:batch", json={"events": events})
    results = response.json()["results"]
    return {r["event_id"] for r in results if r["status"] == 202}


def relay_errors(registry: CollectorRegistry) -> float:
    return registry.get_sample_value("puente_relay_errors_total") or 0.0


async def send(
    producer: AIOKafkaProducer, topic: str, numbers: range
) -> tuple[list[bytes], list[asyncio.Future[Any]]]:
    """Hand ``record-<n>`` for each number to the producer; values and ack futures."""
    values = [f"record-{n}".encode() for n in numbers]
    return values, [await producer.send(topic, v, key=v) for v in values]


async def acknowledged(
    values: list[bytes], futures: list[asyncio.Future[Any]]
) -> tuple[dict[bytes, tuple[int, int]], int]:
    """Where the acknowledged records landed, and how many sends failed."""
    outcomes = await asyncio.gather(*futures, return_exceptions=True)
    acked = {
        value: (outcome.partition, outcome.offset)
        for value, outcome in zip(values, outcomes, strict=True)
        if not isinstance(outcome, BaseException)
    }
    return acked, len(values) - len(acked)


async def read_back(
    kafka: KafkaSettings, topic: str, wanted: dict[bytes, tuple[int, int]]
) -> dict[bytes, list[tuple[int, int]]]:
    """Where each record of ``topic`` is, read until ``wanted`` are all found."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-single-node"))
    await consumer.start()
    found: dict[bytes, list[tuple[int, int]]] = {}
    try:
        partitions = [TopicPartition(topic, p) for p in (0, 1)]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        ends = await consumer.end_offsets(partitions)
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline and not await at_ends(consumer, ends):
            batch = await consumer.getmany(timeout_ms=500)
            for records in batch.values():
                for r in records:
                    found.setdefault(r.value, []).append((r.partition, r.offset))
        return found
    finally:
        await consumer.stop()


async def at_ends(consumer: AIOKafkaConsumer, ends: dict[TopicPartition, int]) -> bool:
    """Whether ``consumer`` has read every partition of ``ends`` to its end."""
    for tp, end in ends.items():
        if await consumer.position(tp) < end:
            return False
    return True


@dataclass
class Service:
    """``python -m <module>`` with the cluster's admin credentials and its own log."""

    name: str
    module: list[str]
    env: dict[str, str]
    ops_port: int
    log: Path
    process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as out:
            self.process = subprocess.Popen(
                [sys.executable, "-m", *self.module],
                cwd=REPO_ROOT,
                env=self.env,
                stdout=out,
                stderr=out,
            )

    @property
    def alive(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def get(self, path: str) -> str:
        try:
            url = f"http://127.0.0.1:{self.ops_port}{path}"
            with urllib.request.urlopen(url, timeout=2) as response:
                return str(response.read().decode())
        except OSError:
            return ""

    def health(self) -> dict[str, Any]:
        text = self.get("/health")
        return dict(json.loads(text)) if text.startswith("{") else {}

    def metric(self, name: str, **labels: str) -> float:
        """The sum of ``name``'s samples whose labels include ``labels``."""
        total = 0.0
        wanted = [f'{k}="{v}"' for k, v in labels.items()]
        for line in self.get("/metrics").splitlines():
            if line.startswith((name + "{", name + " ")) and all(
                w in line for w in wanted
            ):
                total += float(line.rsplit(" ", 1)[1])
        return total

    def stop(self) -> int | None:
        if self.process is None:
            return None
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)
        return self.process.returncode

    def tail(self) -> str:
        return self.log.read_text(encoding="utf-8", errors="replace")[-3000:]


@dataclass
class Hub:
    router: Service
    gateway: Service
    audit: Service
    state_dir: Path
    token: str

    @property
    def services(self) -> list[Service]:
        return [self.router, self.gateway, self.audit]

    def routed(self, **labels: str) -> float:
        return self.router.metric("puente_events_accepted_total", **labels)

    def relayed(self) -> float:
        return self.gateway.metric("puente_relay_published_total")

    def ledger_entries(self) -> int:
        return int(self.audit.health().get("entries", 0))


@dataclass
class Stream:
    """Events offered to the hub, and which of them it accepted."""

    accepted: list[SimEvent] = field(default_factory=list)
    unconfirmed: int = 0  # sends that failed or got no 202: maybe stored, not promised
    stop: asyncio.Event = field(default_factory=asyncio.Event)


@pytest.fixture
def hub(kafka_cluster: LocalKafka, tmp_path: Path) -> Iterator[Hub]:
    admin = kafka_cluster.settings()
    state_dir = tmp_path / "state"
    state_dir.mkdir()
    store = TokenStore(state_dir / "gateway" / "tokens.sqlite")
    _, token = store.create(GATEWAY_SOURCE)
    store.close()
    common = {
        **os.environ,
        **kafka_env(admin),
        "PUENTE_STATE_DIR": str(state_dir),
        "PUENTE_TOPICS_REPLICATION_FACTOR": str(REPLICATION),
        "PUENTE_LOG_LEVEL": "INFO",
    }
    router_port, audit_port, admin_port = free_port(), free_port(), free_port()
    services = {
        "router": Service(
            "router", ["services.router"],
            {**common, "PUENTE_ROUTER_PORT": str(router_port),
             "PUENTE_ROUTER_TRANSACTIONS": "auto",
             "PUENTE_ROUTER_INSTANCE_ID": "failover"},
            router_port, tmp_path / "router.log",
        ),
        "gateway": Service(
            "gateway", ["services.gateway"],
            {**common, "PUENTE_GATEWAY_PORT": str(free_port()),
             "PUENTE_GATEWAY_ADMIN_PORT": str(admin_port),
             "PUENTE_GATEWAY_RATE_LIMIT_PER_S": "0",
             "PUENTE_GATEWAY_PREPARE_WORKERS": "0",
             "PUENTE_GATEWAY_RELAY_BACKOFF_MAX_S": "1"},
            admin_port, tmp_path / "gateway.log",
        ),
        "audit": Service(
            "audit", ["services.audit"],
            {**common, "PUENTE_AUDIT_PORT": str(audit_port),
             "PUENTE_AUDIT_CHECKPOINT_SECONDS": "2"},
            audit_port, tmp_path / "audit.log",
        ),
    }  # fmt: skip
    found = Hub(**services, state_dir=state_dir, token=token)
    try:
        yield found
    finally:
        for service in found.services:
            service.stop()


def public_port(hub: Hub) -> int:
    return int(hub.gateway.env["PUENTE_GATEWAY_PORT"])


async def until(check: Callable[[], bool], within: float, why: str) -> float:
    """Wait for ``check()`` (polled off the event loop); the seconds it took."""
    began = time.monotonic()
    while not await asyncio.to_thread(check):
        assert time.monotonic() - began < within, f"timed out waiting for {why}"
        await asyncio.sleep(0.2)
    return time.monotonic() - began


async def start_hub(hub: Hub, kafka: KafkaSettings, policy: Policy) -> None:
    """Create every topic (replicated 3 times), then start the services."""
    wanted = runtime_topics.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    await runtime_topics.create(kafka, wanted, REPLICATION)
    for service in hub.services:
        service.start()
    await ready(hub.router, lambda h: h.get("partitions", 0) > 0)
    await ready(hub.audit, lambda h: bool(h.get("ok")))
    await ready(hub.gateway, bool)


async def ready(service: Service, healthy: Callable[[dict[str, Any]], bool]) -> None:
    """Wait until ``service`` reports ``healthy``; fail with its log if it exits."""
    try:
        await until(
            lambda: healthy(service.health()) or not service.alive, 120, service.name
        )
    except AssertionError as e:
        raise AssertionError(f"{e}:\n{service.tail()}") from e
    assert service.alive, f"the {service.name} exited:\n{service.tail()}"


async def post_stream(hub: Hub, events: Iterator[SimEvent], stream: Stream) -> None:
    """POST the gateway source's events in small batches, ``RATE`` share per tick."""
    per_tick = max(1, round(RATE * 0.7 * TICK))
    url = f"http://127.0.0.1:{public_port(hub)}"
    auth = {"Authorization": f"Bearer {hub.token}"}
    async with httpx.AsyncClient(base_url=url, headers=auth, timeout=30) as http:
        while not stream.stop.is_set():
            batch = [next(events) for _ in range(per_tick)]
            body = {"events": [e.body for e in batch]}
            try:
                response = await http.post("/v1/events:batch", json=body)
                results = response.json()["results"] if response.is_success else []
            except httpx.HTTPError:
                results = []
            statuses = {r["index"]: r.get("status") for r in results}
            for index, event in enumerate(batch):
                if statuses.get(index) == 202:
                    stream.accepted.append(event)
                else:
                    stream.unconfirmed += 1
            await asyncio.sleep(TICK)


async def produce_stream(
    kafka: KafkaSettings, catalog: Catalog, events: Iterator[SimEvent], stream: Stream
) -> None:
    """Produce the other sources' events; an event counts once its send is acked."""
    per_tick = max(1, round(RATE * 0.3 * TICK))
    producer = AIOKafkaProducer(**producer_config(kafka, "test-failover-source"))
    await producer.start()
    pending: list[tuple[SimEvent, asyncio.Future[Any]]] = []
    try:
        while not stream.stop.is_set():
            for event in [next(events) for _ in range(per_tick)]:
                future = await producer.send(
                    event.topic, event.value(catalog),
                    key=(event.event_id or "").encode(), headers=event.headers(),
                )  # fmt: skip
                pending.append((event, future))
            await asyncio.sleep(TICK)
        outcomes = await asyncio.gather(*(f for _, f in pending), return_exceptions=True)
    finally:
        await producer.stop()
    for (event, _), outcome in zip(pending, outcomes, strict=True):
        if isinstance(outcome, BaseException):
            stream.unconfirmed += 1
        else:
            stream.accepted.append(event)


def sources(seed: int, keep: Callable[[str], bool]) -> Iterator[SimEvent]:
    """Good traffic from the simulator, only of sources ``keep`` accepts."""
    traffic = Traffic(seed, lambda: datetime.now(UTC), bad_share=0.0)
    while True:
        yield from (e for e in traffic.take(200) if keep(e.source))


def expected(
    policy: Policy, catalog: Catalog, keys: SubjectKeys, events: list[SimEvent]
) -> tuple[set[tuple[str, str, str]], int]:
    """The (recipient, event type, ce_id) deliveries and the audit entries due."""
    wanted = set()
    audits = 0
    for event in events:
        datum = codec_for(catalog.get(event.event_type)).to_datum(event.body)
        decisions = policy.decide(event.event_type, datum)
        audits += len(decisions)
        for decision in decisions:
            if decision.delivered:
                ce_id = str(event.event_id)
                if decision.rekeyed:
                    ce_id = keys.recipient_id(decision.recipient, ce_id)
                wanted.add((decision.recipient, event.event_type, ce_id))
    return wanted, audits


async def read_committed(
    kafka: KafkaSettings, watched: list[str], keep: Callable[[Any], bool], expected: int
) -> list[Any]:
    """Records of ``watched`` (from the start) a ``read_committed`` reader sees."""
    config = consumer_config(kafka, None, "test-failover-reader")
    assert config["isolation_level"] == "read_committed"
    consumer = AIOKafkaConsumer(**config)
    await consumer.start()
    found: list[Any] = []
    try:
        partitions = [
            TopicPartition(t, p)
            for t in watched
            for p in sorted(consumer.partitions_for_topic(t) or {0})
        ]
        consumer.assign(partitions)
        await consumer.seek_to_beginning(*partitions)
        deadline = time.monotonic() + 90
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=300)
            found += [r for rs in batch.values() for r in rs if keep(r)]
            if len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + 3
        return found
    finally:
        await consumer.stop()


@dataclass
class Kill:
    """One node killed mid-stream, and how long each service took to carry on."""

    what: str
    node: int
    recovered_s: dict[str, float] = field(default_factory=dict)


async def kill_and_recover(
    hub: Hub, cluster: LocalKafka, kafka: KafkaSettings, node: int, what: str
) -> Kill:
    """SIGKILL ``node``; wait until router, relay and audit each moved on past it.

    The router has recovered once it routed records of the busy partition written
    after the kill (beyond its end then); the relay once it published more rows
    (its rounds wait for every partition's acks); the audit once its ledger grew
    by entries the recovered router wrote (beyond its size when the router
    recovered: what it held before may still have been on its way).
    """
    busy = {"source": "dgme", "event_type": "border_crossing"}
    end = await end_offset(kafka, BUSY)
    relayed = hub.relayed()
    ledger_then: list[int] = []  # the ledger's size when the router recovered

    def router() -> bool:
        if hub.routed(**busy) < end + RECOVERED_AFTER:
            return False
        ledger_then.append(hub.ledger_entries())
        return True

    def audit() -> bool:
        return bool(ledger_then) and (
            hub.ledger_entries() >= ledger_then[0] + RECOVERED_AFTER
        )

    checks = {
        "router": router,
        "relay": lambda: hub.relayed() >= relayed + RECOVERED_AFTER,
        "audit": audit,
    }
    kill = Kill(what, node)
    began = time.monotonic()
    cluster.kill(index_of(cluster, node))
    while len(kill.recovered_s) < len(checks):
        for name, check in checks.items():
            if name not in kill.recovered_s and await asyncio.to_thread(check):
                kill.recovered_s[name] = round(time.monotonic() - began, 1)
        waiting = sorted(checks.keys() - kill.recovered_s.keys())
        assert time.monotonic() - began < 120, f"after the {what} died: {waiting} stalled"
        await asyncio.sleep(0.2)
    return kill


async def restart_after_failover(
    cluster: LocalKafka, kafka: KafkaSettings, node: int
) -> None:
    """Once ``node`` is dead and no longer leads `BUSY`, start it again on its data."""
    index = index_of(cluster, node)
    await until(lambda: not cluster.running(index), 60, f"node {node} to die")
    deadline = time.monotonic() + 120
    while await leader_now(kafka) in (node, None):
        assert time.monotonic() < deadline, f"{BUSY} still led by dead node {node}"
        await asyncio.sleep(0.5)
    await asyncio.to_thread(cluster.restart, index)


async def leader_now(kafka: KafkaSettings) -> int | None:
    """`BUSY`'s leader, or None while the client cannot say (it asked a dead node)."""
    try:
        return await leader_of(kafka, BUSY)
    except KafkaError:
        return None


async def end_offset(kafka: KafkaSettings, topic: str) -> int:
    """Where partition 0 of ``topic`` ends now."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-failover-end"))
    await consumer.start()
    try:
        tp = TopicPartition(topic, 0)
        ends: dict[TopicPartition, int] = await consumer.end_offsets([tp])
        return ends[tp]
    finally:
        await consumer.stop()


async def test_killing_a_busy_partition_leader_and_then_the_controller_loses_and_doubles_nothing(  # noqa: E501
    kafka_cluster: LocalKafka, hub: Hub, catalog: Catalog
) -> None:
    admin = kafka_cluster.settings()
    # On Apache Kafka every producer of the hub is idempotent (auto asks the broker).
    assert await probe_idempotence(admin) is True
    assert producer_config(admin, "check")["enable_idempotence"] is True
    policy = load_policy(HubSettings().policy_dir, catalog)
    began = time.monotonic()
    await start_hub(hub, admin, policy)
    started_s = time.monotonic() - began
    assert hub.router.health().get("transactions") is True, hub.router.tail()

    stream = Stream()
    senders = asyncio.gather(
        post_stream(hub, sources(7, lambda s: s == GATEWAY_SOURCE), stream),
        produce_stream(admin, catalog, sources(8, lambda s: s != GATEWAY_SOURCE), stream),
    )
    try:
        await until(lambda: hub.routed(source="dgme") >= 200, 90, "a busy stream")
        leader = await leader_of(admin, BUSY)
        # The dead node starts again once Kafka has moved its partitions away (so
        # the hub fails over without it), while the services are still recovering.
        back = asyncio.create_task(restart_after_failover(kafka_cluster, admin, leader))
        first = await kill_and_recover(
            hub, kafka_cluster, admin, leader, f"leader of {BUSY}"
        )
        await back
        wanted = runtime_topics.plan(
            TopicSettings(), policy.publish_rights, policy.receive_rights
        )
        internal = ["__consumer_offsets", "__transaction_state"]
        resync_s = await until_in_sync(admin, [*wanted, *internal])
        controller = active_controller(kafka_cluster)
        second = await kill_and_recover(
            hub, kafka_cluster, admin, controller, "active controller"
        )
        await asyncio.sleep(2)  # the stream goes on a little on two nodes
    finally:
        stream.stop.set()
        await senders
    streamed_s = time.monotonic() - began - started_s
    for service in hub.services:
        assert service.alive, f"the {service.name} exited:\n{service.tail()}"

    # Everything accepted reaches the router; the gateway's outbox empties.
    await until(
        lambda: hub.gateway.health().get("outbox_depth") == 0, 120, "the outbox to drain"
    )
    drained = time.monotonic()
    keys = subject_keys(HubKeySettings(hub=HubSettings(state_dir=hub.state_dir)))
    deliveries, audits = expected(policy, catalog, keys, stream.accepted)
    ids = {i for _, _, i in deliveries}
    out_topics = sorted({topics.outbound(r, t) for r, t, _ in deliveries})
    # Every audit entry on the topic (also of sends whose fate was unknown), and the
    # deliveries of accepted events.
    got = await read_committed(
        admin, [*out_topics, topics.AUDIT],
        lambda r: r.topic == topics.AUDIT or header(r, "ce_id") in ids,
        expected=len(deliveries) + audits,
    )  # fmt: skip
    delivered = Counter(
        (r.topic.split(".")[2], r.topic.split(".")[3], header(r, "ce_id"))
        for r in got
        if r.topic != topics.AUDIT
    )
    accepted_ids = {str(e.event_id) for e in stream.accepted}
    on_topic = Counter(header(r, "ce_id") for r in got if r.topic == topics.AUDIT)
    entries = Counter(
        header(r, "ce_id")
        for r in got
        if r.topic == topics.AUDIT and (r.key or b"").decode() in accepted_ids
    )
    missing = deliveries - set(delivered)
    doubled = sum(n - 1 for n in delivered.values())
    doubled_audit = sum(n - 1 for n in on_topic.values())

    # The ledger holds every audit entry on the topic, each once, and verifies.
    await until(
        lambda: hub.ledger_entries() >= len(on_topic), 60, "the ledger to catch up"
    )
    counted_s = time.monotonic() - drained
    codes = dict(
        zip(
            [s.name for s in hub.services],
            await asyncio.gather(*(asyncio.to_thread(s.stop) for s in hub.services)),
            strict=True,
        )
    )
    ledger = hub.state_dir / "audit" / "ledger.sqlite"
    pinned = pinned_keys(AuditSettings(hub=HubSettings(state_dir=hub.state_dir)))
    verified = verify_ledger(ledger, pinned)
    with reading(ledger) as opened:
        in_ledger = Counter(row.audit_id for row in opened.rows())

    print(
        f"\nfailover on 3 nodes: {len(stream.accepted)} events accepted "
        f"({stream.unconfirmed} unconfirmed sends), {len(deliveries)} entitled "
        f"deliveries, {len(set(delivered) & deliveries)} seen, {len(missing)} missing, "
        f"{doubled} doubled; {audits} audit entries due, {len(entries)} seen, "
        f"{doubled_audit} doubled; ledger {verified.entries} entries, "
        f"ok={verified.ok}; hub started in {started_s:.1f} s"
    )
    for kill in (first, second):
        print(
            f"  kill -9 {kill.what} (node {kill.node}): carried on after (s) "
            f"{kill.recovered_s}"
        )
    print(
        f"  the restarted node was back in sync {resync_s:.1f} s after its start; "
        f"streamed for {streamed_s:.0f} s; reading and counting took {counted_s:.1f} s"
    )

    assert not missing, f"{len(missing)} of {len(deliveries)} deliveries lost"
    assert doubled == 0, f"{doubled} deliveries seen twice"
    assert len(entries) == audits, f"{audits - len(entries)} audit entries missing"
    assert doubled_audit == 0, f"{doubled_audit} audit entries seen twice"
    assert verified.ok, verified.problems
    assert in_ledger.keys() == on_topic.keys()
    assert max(in_ledger.values()) == 1
    assert codes == {"router": 0, "gateway": 0, "audit": 0}, codes
    for service in (hub.gateway, hub.audit):  # the relay's and the checkpoints' producer
        assert "producers are idempotent" in service.log.read_text(), service.tail()
