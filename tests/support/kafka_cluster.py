"""Three Apache Kafka nodes for failover tests, started as `puente kafka up --brokers 3`.

Each node is broker and KRaft controller in one JVM with a small heap (the fault
tests share a 2-core machine); topics are replicated three times and a write needs
two in-sync replicas, so one node may die without losing an acknowledged record.
The fixture and the helpers find what a test kills: the leader of a partition, the
active controller of the metadata quorum.

A test module uses it by importing the fixture::

    from tests.support.kafka_cluster import kafka_cluster  # noqa: F401
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import Iterable, Iterator
from typing import Any

import pytest
from aiokafka.admin import AIOKafkaAdminClient

from services.kafkalocal import LocalKafka, LocalKafkaError
from services.runtime.kafka import admin_config
from services.runtime.settings import KafkaSettings

HEAP = "384m"
NODES = 3


@pytest.fixture(scope="module")
def kafka_cluster(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LocalKafka]:
    """Three KRaft nodes on free loopback ports (replication 3, min.insync 2).

    One per test module: three JVMs are too much to keep for the rest of a run.
    """
    cluster = LocalKafka(
        tmp_path_factory.mktemp("kafka-cluster"), brokers=NODES, port_base=0, heap=HEAP
    )
    try:
        cluster.start()
    except LocalKafkaError as e:
        pytest.fail(f"the Apache Kafka cluster could not be started: {e}", pytrace=False)
    try:
        yield cluster
    finally:
        cluster.stop()


def index_of(cluster: LocalKafka, node_id: int) -> int:
    """The position of node ``node_id`` in ``cluster.nodes`` (for kill and restart)."""
    return next(i for i, n in enumerate(cluster.nodes) if n.node_id == node_id)


def active_controller(cluster: LocalKafka) -> int:
    """The node id of the metadata quorum's leader, as the voters last recorded it.

    Clients cannot ask (KRaft brokers name a random broker as "controller" in
    metadata), so this reads each running node's ``quorum-state`` file and takes
    the leader of the newest epoch.
    """
    best: tuple[int, int] | None = None
    for node in cluster.nodes:
        path = node.data_dir / "__cluster_metadata-0" / "quorum-state"
        try:
            state = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue
        epoch, leader = int(state.get("leaderEpoch", -1)), int(state.get("leaderId", -1))
        if leader > 0 and (best is None or epoch > best[0]):
            best = (epoch, leader)
    if best is None:
        raise AssertionError("no node has recorded a quorum leader")
    return best[1]


async def describe(kafka: KafkaSettings, topics: Iterable[str]) -> list[dict[str, Any]]:
    """Partition metadata (leader, replicas, isr) of ``topics``, fresh from a broker."""
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-cluster-describe"))
    await admin.start()
    try:
        found: list[dict[str, Any]] = await admin.describe_topics(list(topics))
        return found
    finally:
        await admin.close()


async def leader_of(kafka: KafkaSettings, topic: str, partition: int = 0) -> int:
    """The node id leading ``topic``'s ``partition`` now."""
    for described in await describe(kafka, [topic]):
        for p in described["partitions"]:
            if p["partition"] == partition:
                return int(p["leader"])
    raise AssertionError(f"{topic}-{partition} has no leader")


async def until_in_sync(
    kafka: KafkaSettings, topics: Iterable[str], timeout: float = 90.0
) -> float:
    """Wait until every partition of ``topics`` has all its replicas in sync; seconds."""
    names = sorted(topics)
    began = time.monotonic()
    while True:
        try:
            described = await describe(kafka, names)
            lagging = [
                f"{t['topic']}-{p['partition']}"
                for t in described
                for p in t["partitions"]
                if len(p["isr"]) < len(p["replicas"]) or p["leader"] < 0
            ]
        except Exception as e:
            lagging = [f"({type(e).__name__})"]
        if not lagging:
            return time.monotonic() - began
        assert time.monotonic() - began < timeout, f"not in sync: {lagging[:5]}"
        await asyncio.sleep(0.5)
