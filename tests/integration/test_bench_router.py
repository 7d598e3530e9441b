"""`puente bench router` end to end at a small size: every phase runs and reports."""

from __future__ import annotations

import re

import psutil
import pytest
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from typer.testing import CliRunner

from services.cli import app
from services.router import bench
from services.router.bench_brokers import start_at_end
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.settings import KafkaSettings
from tests.support.kafka import create_inbound

pytestmark = [pytest.mark.integration, pytest.mark.slow]


@pytest.mark.timeout(300)
async def test_a_small_router_bench_measures_every_phase() -> None:
    lines: list[str] = []
    figures = await bench.run(
        300, rate=200, duration=1, seed=7, echo=lines.append, workers=1, rounds=2
    )
    assert len(figures.pairs) == 2
    assert all(p.router_eps > 0 and p.raw_eps > 0 for p in figures.pairs)
    # Every event decided yields at least one audit entry or a rejection.
    assert figures.outputs >= 300
    assert figures.workers_eps > 0
    assert figures.latency_events > 100  # most of the 200 offered events deliver
    assert figures.p50_ms <= figures.p99_ms
    assert len(figures.p99_by_fifth_ms) == 5
    # The whole run's p99 cannot exceed the worst fifth's (up to interpolation).
    assert max(figures.p99_by_fifth_ms) >= figures.p99_ms * 0.9
    # The broker worked while events were offered (its CPU is read from its process).
    assert figures.broker_cpu is not None
    assert figures.broker_cpu > 0
    assert min(p.ratio for p in figures.pairs) <= figures.ratio
    assert figures.ratio <= max(p.ratio for p in figures.pairs)
    assert [line.split(":")[0] for line in lines if line.startswith("round")] == [
        "round 1",
        "round 2",
    ]


@pytest.mark.timeout(300)
def test_the_bench_measures_on_a_local_apache_kafka_with_transactions_off_and_on() -> (
    None
):
    # The session's own Apache Kafka node is a child of this process too.
    before = set(java_children())
    result = CliRunner().invoke(
        app,
        ["bench", "router", "--no-embedded", "--kafka", "--transactions", "both",
         "--events", "200", "--rate", "200", "--duration", "1", "--workers", "1",
         "--rounds", "1"],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    reports = re.findall(
        r"router bench on Apache Kafka \S+ \(local, 1 node\), transactions (on|off) "
        r"\(200 events, (\d+) outputs\)",
        result.output,
    )
    # One report per setting, each with the same outputs: transactions change how
    # the router writes, not what.
    assert [mode for mode, _ in reports] == ["off", "on"]
    assert len({outputs for _, outputs in reports}) == 1
    assert int(reports[0][1]) >= 200
    latencies = re.findall(r"p99 ([\d.]+) ms over (\d+) events", result.output)
    assert len(latencies) == 2
    assert all(int(events) > 100 for _, events in latencies)
    # The broker's CPU is read from the JVM the bench started.
    assert result.output.count("broker while offered") == 2
    # ... which it stopped afterwards.
    assert set(java_children()) <= before


def java_children() -> list[int]:
    """Process ids of the JVMs this process started (directly or not)."""
    children = psutil.Process().children(recursive=True)
    return [p.pid for p in children if "java" in p.name()]


async def test_a_phase_on_a_reused_broker_reads_only_the_events_published_after_it_began(
    kafka: KafkaSettings, unique: str
) -> None:
    topic = f"hub.in.b{unique}.return_arrival"
    await create_inbound(kafka, {topic: 2})
    producer = AIOKafkaProducer(**producer_config(kafka, "bench-test"))
    await producer.start()
    try:
        for n in range(6):  # what an earlier phase or run left on both partitions
            await producer.send_and_wait(topic, b"old", key=str(n).encode())
        await start_at_end(kafka, f"bench-{unique}", {topic: 2, "hub.audit": 1})
        await producer.send_and_wait(topic, b"new")
    finally:
        await producer.stop()
    consumer = AIOKafkaConsumer(**consumer_config(kafka, f"bench-{unique}", "bench-test"))
    consumer.subscribe([topic])
    await consumer.start()
    try:
        seen: list[bytes] = []
        for _ in range(20):
            batch = await consumer.getmany(timeout_ms=250)
            seen += [r.value for records in batch.values() for r in records if r.value]
            if seen:
                break
        late = await consumer.getmany(timeout_ms=500)  # anything older comes by now
        seen += [r.value for records in late.values() for r in records if r.value]
        assert seen == [b"new"]
    finally:
        await consumer.stop()
