"""kill -9 the router mid-stream on Apache Kafka: every delivery and audit entry once.

The router runs as its own process (``python -m services.router``) with
``PUENTE_ROUTER_TRANSACTIONS=on``: it consumes, delivers, writes audit entries and
commits its input offsets in one Kafka transaction. Each trial streams events into
the inbound topics, kills the router with SIGKILL at a random moment while it routes,
deletes its de-duplication memory (so only the transactions can keep deliveries
single), restarts it with the same instance id, and counts what ``read_committed``
consumers see: each entitled delivery and each audit entry exactly once.

``make test`` runs ``PUENTE_TEST_EOS_TRIALS`` trials (3 by default); set it to 20 for
the issue's figures (``PUENTE_TEST_EOS_SEED`` picks the kill moments).
``PUENTE_TEST_EOS_TRANSACTIONS=off`` is the control: the same trials at-least-once,
where the test is expected to fail on duplicates. The router runs as its own SCRAM
principal with only the ACL plan's grants (its group, and WRITE on the transactional
ids ``puente-router.*``); the test publishes and reads as the admin.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import subprocess
import sys
import time
import urllib.request
from collections import Counter
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from services.contracts import topics
from services.contracts.catalog import Catalog
from services.contracts.natural import codec_for
from services.policy import Policy
from services.policy.subject import SubjectKeys
from services.runtime.embedded import free_port
from services.runtime.hub_key_store import HubKeySettings, subject_keys
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings
from services.sim.traffic import SimEvent, Traffic
from tests.security.hub import SERVICES, Hub
from tests.support.kafka import header

TRIALS = int(os.environ.get("PUENTE_TEST_EOS_TRIALS", "3"))
SEED = int(os.environ.get("PUENTE_TEST_EOS_SEED", "15"))
TRANSACTIONS = os.environ.get("PUENTE_TEST_EOS_TRANSACTIONS", "on")
EVENTS = 1200  # per trial
RATE = 400.0  # events/s offered while the router runs
# Views whose deliveries carry the hub's own event id (the router's _RELAXED_VIEWS).
SHARED_ID_VIEWS = frozenset({"FULL", "IDENT"})
PARTITIONS = TopicSettings()  # the hub fixture creates the default partition counts

pytestmark = [
    pytest.mark.security,
    pytest.mark.slow,
    pytest.mark.timeout(90 + 50 * TRIALS),
]


class RouterProcess:
    """The router as an operator runs it, in transactions, as ``kafka``'s user."""

    def __init__(self, kafka: KafkaSettings, state_dir: Path, group: str) -> None:
        self.port = free_port()
        self.state_dir = state_dir
        password = kafka.sasl_password.get_secret_value() if kafka.sasl_password else ""
        self.env = {
            **os.environ,
            "PUENTE_KAFKA_BOOTSTRAP_SERVERS": str(kafka.bootstrap_servers),
            "PUENTE_KAFKA_SECURITY_PROTOCOL": kafka.security_protocol,
            "PUENTE_KAFKA_SASL_MECHANISM": str(kafka.sasl_mechanism),
            "PUENTE_KAFKA_SASL_USERNAME": str(kafka.sasl_username),
            "PUENTE_KAFKA_SASL_PASSWORD": password,
            "PUENTE_STATE_DIR": str(state_dir),
            "PUENTE_ROUTER_GROUP_ID": group,
            "PUENTE_ROUTER_PORT": str(self.port),
            "PUENTE_ROUTER_TRANSACTIONS": TRANSACTIONS,
            "PUENTE_ROUTER_INSTANCE_ID": "eos-trial",
        }
        self.log = state_dir / "router.log"
        self.process: subprocess.Popen[bytes] | None = None

    def start(self) -> None:
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                [sys.executable, "-m", "services.router"], env=self.env,
                stdout=subprocess.DEVNULL, stderr=log,
            )  # fmt: skip

    def _get(self, path: str) -> str:
        try:
            with urllib.request.urlopen(
                f"http://127.0.0.1:{self.port}{path}", timeout=2
            ) as r:
                return str(r.read().decode())
        except OSError:
            return ""

    def ready(self) -> bool:
        """Started, in transactions (unless the control), holding partitions."""
        text = self._get("/health")
        if not text:
            return False
        health = json.loads(text)
        mode = health.get("transactions") == (TRANSACTIONS == "on")
        return mode and int(health.get("partitions", 0)) > 0

    def accepted(self) -> float:
        """Events routed and committed so far (the router's own metric)."""
        text = self._get("/metrics")
        return sum(
            float(line.rsplit(" ", 1)[1])
            for line in text.splitlines()
            if line.startswith("puente_events_accepted_total{")
        )

    def kill(self) -> None:
        assert self.process is not None
        self.process.send_signal(signal.SIGKILL)
        self.process.wait(timeout=10)

    def stop(self) -> None:
        if self.process is not None and self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait(timeout=10)

    def forget(self) -> None:
        """Delete the de-duplication memory: only the transactions may prevent repeats."""
        for path in (self.state_dir / "router").glob("dedupe.sqlite*"):
            path.unlink()


@dataclass
class Tally:
    """What ``read_committed`` consumers saw of one trial's outputs."""

    deliveries_expected: int
    deliveries_seen: int  # distinct (recipient, event type, event id)
    deliveries_duplicated: int
    deliveries_missing: int
    audit_expected: int
    audit_seen: int  # distinct audit ids
    audit_duplicated: int
    killed_after: float  # seconds after the router's first commit
    committed_at_kill: int
    recovered_seconds: float


@pytest.fixture
def router(hub: Hub, tmp_path: Path) -> Any:
    process = RouterProcess(
        hub.settings(SERVICES.router), tmp_path, SERVICES.router_group
    )
    yield process
    process.stop()


async def test_a_router_killed_mid_stream_delivers_and_audits_each_event_exactly_once(
    hub: Hub, catalog: Catalog, router: RouterProcess
) -> None:
    rng = random.Random(SEED)
    tallies = []
    for trial in range(TRIALS):
        tally = await one_trial(hub, catalog, router, rng, trial)
        tallies.append(tally)
        print(f"exactly-once trial {trial + 1}/{TRIALS}: {tally}")
    print(summary(tallies))
    for tally in tallies:
        assert tally.deliveries_missing == 0, tally
        assert tally.deliveries_duplicated == 0, tally
        assert tally.deliveries_seen == tally.deliveries_expected, tally
        assert tally.audit_duplicated == 0, tally
        assert tally.audit_seen == tally.audit_expected, tally
    assert "routing exactly-once in Kafka transactions" in router.log.read_text()


async def one_trial(
    hub: Hub, catalog: Catalog, router: RouterProcess, rng: random.Random, trial: int
) -> Tally:
    """Stream, kill at a random moment, restart, count."""
    admin = hub.kafka.settings()
    events = Traffic(rng.randrange(1 << 30), lambda: datetime.now(UTC), bad_share=0.0)
    batch = events.take(EVENTS)
    router.start()
    await until(router.ready, 90)
    # The router made its development hub key by now; pseudonymous deliveries carry
    # the recipient's own id for the event, derived from it.
    keys = subject_keys(HubKeySettings(hub=HubSettings(state_dir=router.state_dir)))
    wanted, audits = expected(hub.policy, catalog, keys, batch)
    out_topics = sorted({topics.outbound(r, t) for r, t, _ in wanted})
    starts = await ends(admin, [*out_topics, topics.AUDIT])
    stream = asyncio.create_task(publish(admin, catalog, batch))
    await until(lambda: router.accepted() > 0, 60)
    delay = rng.uniform(0.1, 2.5)  # the stream lasts EVENTS / RATE = 3 s
    await asyncio.sleep(delay)
    committed = int(router.accepted())
    router.kill()
    router.forget()
    restarted = time.monotonic()
    router.start()
    await stream

    ids = {str(e.event_id) for e in batch} | {i for _, _, i in wanted}
    got = await read_committed(
        admin, starts, ids, expected=len(wanted) + audits, timeout=45
    )
    recovered = time.monotonic() - restarted
    router.stop()
    deliveries = Counter(
        (r.topic.split(".")[2], r.topic.split(".")[3], header(r, "ce_id"))
        for r in got
        if r.topic != topics.AUDIT
    )
    entries = Counter(header(r, "ce_id") for r in got if r.topic == topics.AUDIT)
    return Tally(
        deliveries_expected=len(wanted),
        deliveries_seen=len(set(deliveries) & wanted),
        deliveries_duplicated=sum(n - 1 for n in deliveries.values()),
        deliveries_missing=len(wanted - set(deliveries)),
        audit_expected=audits,
        audit_seen=len(entries),
        audit_duplicated=sum(n - 1 for n in entries.values()),
        killed_after=round(delay, 2),
        committed_at_kill=committed,
        recovered_seconds=round(recovered, 1),
    )


def expected(
    policy: Policy, catalog: Catalog, keys: SubjectKeys, events: list[SimEvent]
) -> tuple[set[tuple[str, str, str]], int]:
    """The (recipient, event type, ce_id) deliveries and the audit entries due.

    A delivery's ``ce_id`` is the event id, or for a pseudonymous view the
    recipient's own id for it.
    """
    wanted = set()
    audits = 0
    for event in events:
        datum = codec_for(catalog.get(event.event_type)).to_datum(event.body)
        decisions = policy.decide(event.event_type, datum)
        audits += len(decisions)
        for decision in decisions:
            if decision.delivered:
                event_id = str(event.event_id)
                if decision.view not in SHARED_ID_VIEWS:
                    event_id = keys.recipient_id(decision.recipient, event_id)
                wanted.add((decision.recipient, event.event_type, event_id))
    return wanted, audits


async def publish(kafka: KafkaSettings, catalog: Catalog, events: list[SimEvent]) -> None:
    """Send ``events`` at ``RATE``, so the router is killed mid-stream."""
    producer = AIOKafkaProducer(**producer_config(kafka, "test-eos-source"))
    await producer.start()
    try:
        chunk = 40
        for start in range(0, len(events), chunk):
            sends = [
                await producer.send(
                    e.topic, e.value(catalog), key=(e.event_id or "").encode(),
                    headers=e.headers(),
                )
                for e in events[start : start + chunk]
            ]  # fmt: skip
            await asyncio.gather(*sends)
            await asyncio.sleep(chunk / RATE)
    finally:
        await producer.stop()


def partitions(topic: str) -> list[TopicPartition]:
    count = PARTITIONS.audit_partitions if topic == topics.AUDIT else 1
    if topic.startswith("hub.out."):
        count = PARTITIONS.outbound_partitions
    return [TopicPartition(topic, p) for p in range(count)]


async def ends(kafka: KafkaSettings, watched: list[str]) -> dict[TopicPartition, int]:
    """Where each watched partition ends now (nothing of this trial is before it)."""
    consumer = AIOKafkaConsumer(**consumer_config(kafka, None, "test-eos-ends"))
    await consumer.start()
    try:
        wanted = [tp for topic in watched for tp in partitions(topic)]
        found: dict[TopicPartition, int] = await consumer.end_offsets(wanted)
        return found
    finally:
        await consumer.stop()


async def read_committed(
    kafka: KafkaSettings,
    starts: dict[TopicPartition, int],
    ids: set[str],
    *,
    expected: int,
    timeout: float,
    settle: float = 3.0,
) -> list[Any]:
    """The trial's deliveries and audit entries a ``read_committed`` reader sees.

    Deliveries carry the event id as ``ce_id``; audit entries are keyed by it.
    """
    config = consumer_config(kafka, None, "test-eos-reader")
    assert config["isolation_level"] == "read_committed"
    consumer = AIOKafkaConsumer(**config)
    await consumer.start()
    found: list[Any] = []
    try:
        consumer.assign(list(starts))
        for tp, offset in starts.items():
            consumer.seek(tp, offset)
        deadline = time.monotonic() + timeout
        settle_until: float | None = None
        while time.monotonic() < (settle_until or deadline):
            batch = await consumer.getmany(timeout_ms=200)
            found += [r for rs in batch.values() for r in rs if mine(r, ids)]
            if len(found) >= expected and settle_until is None:
                settle_until = time.monotonic() + settle
        return found
    finally:
        await consumer.stop()


def mine(record: Any, ids: set[str]) -> bool:
    if record.topic == topics.AUDIT:
        return (record.key or b"").decode() in ids
    return header(record, "ce_id") in ids


async def until(check: Any, seconds: float) -> float:
    """Wait for ``check()``; the monotonic time it first held."""
    deadline = time.monotonic() + seconds
    while not check():
        assert time.monotonic() < deadline, "timed out"
        await asyncio.sleep(0.05)
    return time.monotonic()


def summary(tallies: list[Tally]) -> str:
    keys = (
        "deliveries_expected", "deliveries_seen", "deliveries_duplicated",
        "deliveries_missing", "audit_expected", "audit_seen", "audit_duplicated",
    )  # fmt: skip
    totals = {k: sum(getattr(t, k) for t in tallies) for k in keys}
    slowest = max(t.recovered_seconds for t in tallies)
    return f"exactly-once, {len(tallies)} trials: {totals}; slowest recovery {slowest} s"
