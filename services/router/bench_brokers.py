"""The brokers ``puente bench router`` measures on: embedded, or Apache Kafka.

The embedded broker slows down as stored batches pile up, so every phase gets a fresh
one. Apache Kafka does not, and starting one costs a JVM start, so every phase shares
one broker: topics are created once, and each phase's consumer groups start at the end
of the inbound topics, so a phase reads only the events it published itself (also on a
broker that earlier runs or other traffic filled).
"""

from __future__ import annotations

import asyncio
import contextlib
import re
import tempfile
import time
from collections.abc import AsyncIterator, Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import psutil
from aiokafka import AIOKafkaConsumer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from aiokafka.structs import OffsetAndMetadata

from services.contracts.errors import PuenteError
from services.kafkalocal import LocalKafka
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import EmbeddedBroker
from services.runtime.kafka import admin_config, consumer_config
from services.runtime.settings import KafkaSettings

# What the router and the raw pipe consume (the router's pattern is narrower).
INBOUND = re.compile(r"hub\.in\..*")
EMBEDDED = "embedded broker"
CpuReader = Callable[[], float | None]
_PLAINTEXT: Mapping[str, Any] = {
    "security_protocol": "PLAINTEXT",
    "sasl_mechanism": None,
    "sasl_username": None,
    "sasl_password": None,
    "ssl_cafile": None,
    "ssl_certfile": None,
    "ssl_keyfile": None,
}


class BenchBrokerError(PuenteError):
    """The benchmark's broker could not be prepared for a phase."""


@dataclass(frozen=True, slots=True)
class Phase:
    """A phase's broker: how to reach it and how much CPU it has used so far."""

    kafka: KafkaSettings
    cpu_seconds: CpuReader


class Brokers(Protocol):
    """Where the phases of one bench run take place."""

    @property
    def label(self) -> str:
        """The broker's name in the report."""
        ...

    def phase(
        self, wanted: Mapping[str, int], groups: Sequence[str]
    ) -> contextlib.AbstractAsyncContextManager[Phase]:
        """A broker with the ``wanted`` topics, where ``groups`` start at the end."""
        ...


class Embedded:
    """A fresh embedded broker per phase, with every hub topic created."""

    label = EMBEDDED

    @contextlib.asynccontextmanager
    async def phase(
        self, wanted: Mapping[str, int], groups: Sequence[str]
    ) -> AsyncIterator[Phase]:
        """Start a broker, create the topics; a fresh broker has no group offsets."""
        del groups  # nothing was ever committed on a fresh broker
        with EmbeddedBroker() as broker:
            # Plain text whatever PUENTE_KAFKA_* say: they may name the Apache Kafka
            # that the same run measures next.
            kafka = KafkaSettings(
                bootstrap_servers=broker.bootstrap_servers, **_PLAINTEXT
            )
            await runtime_topics.create(kafka, wanted)
            yield Phase(kafka, lambda: _pid_cpu(broker.pid))


@dataclass
class ApacheKafka:
    """One running Apache Kafka shared by every phase (admin credentials needed).

    ``pids``: the broker processes, when they run on this machine (their CPU is read).
    """

    kafka: KafkaSettings
    label: str
    pids: Callable[[], list[int]] | None = None

    @contextlib.asynccontextmanager
    async def phase(
        self, wanted: Mapping[str, int], groups: Sequence[str]
    ) -> AsyncIterator[Phase]:
        """Create missing topics, then move ``groups`` to the end of the inbound ones."""
        if await runtime_topics.create(self.kafka, wanted):
            # A partition created a moment ago may have no leader yet; the first
            # phase's clock must not run while the broker settles it.
            await partitions_of(self.kafka, sorted(wanted))
        for group in groups:
            await start_at_end(self.kafka, group, wanted)
        yield Phase(self.kafka, self.cpu_seconds)

    def cpu_seconds(self) -> float | None:
        """CPU time the broker processes used so far; None when not on this machine."""
        if self.pids is None:
            return None
        try:
            return sum(_cpu(psutil.Process(pid)) for pid in self.pids())
        except psutil.Error:  # gone, or not ours to look at
            return None


async def start_at_end(
    kafka: KafkaSettings, group: str, wanted: Mapping[str, int], seconds: float = 30
) -> None:
    """Commit, for ``group``, the end offset of every inbound partition.

    A group without offsets would start at the earliest record (the hub's setting)
    and re-read what earlier phases published.
    """
    names = sorted(t for t in wanted if INBOUND.fullmatch(t))
    partitions = await partitions_of(kafka, names, seconds)
    consumer = AIOKafkaConsumer(**consumer_config(kafka, group, f"{group}-seek"))
    await consumer.start()
    try:
        consumer.assign(partitions)
        await consumer.seek_to_end(*partitions)
        ends = {
            tp: OffsetAndMetadata(await consumer.position(tp), "") for tp in partitions
        }
        await consumer.commit(ends)
    finally:
        await consumer.stop()


async def partitions_of(
    kafka: KafkaSettings, names: Sequence[str], seconds: float = 30
) -> list[TopicPartition]:
    """Every partition of ``names``, once the broker reports a leader and ISR for each.

    Asked of the broker, not of a client's metadata cache: a topic created a moment
    ago may be missing from that until its next refresh, minutes later.
    """
    admin = AIOKafkaAdminClient(**admin_config(kafka, "bench-seek"))
    await admin.start()
    try:
        deadline = time.monotonic() + seconds
        while True:
            described = {t["topic"]: t for t in await admin.describe_topics(list(names))}
            found = [
                TopicPartition(name, p["partition"])
                for name in names
                for p in described.get(name, {}).get("partitions", ())
                if p["error_code"] == 0 and p["leader"] >= 0 and p["isr"]
            ]
            ready = {tp.topic for tp in found}
            if all(n in ready and described[n]["error_code"] == 0 for n in names):
                return found
            if time.monotonic() > deadline:
                missing = next(n for n in names if n not in ready)
                raise BenchBrokerError(
                    f"topic {missing} has no leader after {seconds:.0f} s"
                )
            await asyncio.sleep(0.2)
    finally:
        await admin.close()


@contextlib.contextmanager
def local_apache_kafka(heap: str = "512m") -> Iterator[ApacheKafka]:
    """A local Apache Kafka (one node, free ports) for the run, stopped after it."""
    with tempfile.TemporaryDirectory(prefix="puente-bench-kafka-") as tmp:
        local = LocalKafka(Path(tmp), port_base=0, heap=heap)
        local.start()
        try:
            version = local.artifacts.version if local.artifacts else "?"
            yield ApacheKafka(
                local.settings(),
                f"Apache Kafka {version} (local, 1 node)",
                lambda: local.pids,
            )
        finally:
            local.stop()


def running_apache_kafka(bootstrap: str) -> ApacheKafka:
    """An Apache Kafka already running at ``bootstrap``; security from PUENTE_KAFKA_*."""
    kafka = KafkaSettings().model_copy(update={"bootstrap_servers": bootstrap})
    return ApacheKafka(kafka, f"Apache Kafka at {bootstrap}")


def _pid_cpu(pid: int | None) -> float | None:
    """CPU time process ``pid`` used so far; None when it cannot be read."""
    if pid is None:
        return None
    try:
        return _cpu(psutil.Process(pid))
    except psutil.Error:  # gone, or not ours to look at
        return None


def _cpu(process: psutil.Process) -> float:
    times = process.cpu_times()
    return float(times.user + times.system)
