"""``puente bench router``: the router against a raw aiokafka pipe, on one broker.

1. Publish N realistic mixed events (simulated ministries, 2 % bad) to hub.in.*.
2. Router: consume them all; events/s from its first batch to its last.
3. Raw pipe: the same inputs, writing as many output messages as the router did
   (bytes copied, no decode or policy); events/s the same way. Steps 2 and 3 are
   repeated in rounds, each ratio taken from runs back to back.
4. Latency: the router caught up, events offered at R/s for S seconds; per event,
   from send to the first delivery seen by a recipient-side consumer.

The broker is the embedded one (fresh for every phase) or Apache Kafka
(`services.router.bench_brokers`); a run measures on one, the command on each asked.
"""

from __future__ import annotations

import asyncio
import contextlib
import statistics
import tempfile
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Literal

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.contracts.headers import event_id_of
from services.contracts.natural import codec_for
from services.policy import Policy, load_policy
from services.router.app import build_service
from services.router.bench_brokers import (
    Brokers,
    CpuReader,
    Embedded,
    Phase,
    partitions_of,
)
from services.router.settings import RouterSettings
from services.router.workers import Workers
from services.runtime import topic_admin as runtime_topics
from services.runtime.embedded import free_port
from services.runtime.kafka import consumer_config, producer_config
from services.runtime.service import tune_gc
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings
from services.sim.traffic import SimEvent, Traffic

Echo = Callable[[str], None]
Transactions = Literal["on", "off"]
RAW_SINK = "bench.raw.out"
WATCHER_FETCH_WAIT_MS = 10


@dataclass(frozen=True, slots=True)
class Pair:
    """One round: the router, then the raw pipe right after it."""

    router_eps: float
    raw_eps: float
    outputs: int

    @property
    def ratio(self) -> float:
        """Single-process router throughput as a share of the raw pipe's."""
        return self.router_eps / self.raw_eps if self.raw_eps else 0.0


@dataclass(frozen=True, slots=True)
class Figures:
    """What the benchmark measured."""

    events: int
    workers: int
    workers_eps: float
    pairs: tuple[Pair, ...]
    latency_events: int
    offered_rate: float
    p50_ms: float
    p99_ms: float
    # p99 per fifth of the latency run: the embedded broker slows as batches pile up.
    p99_by_fifth_ms: tuple[float, ...] = ()
    # The broker's CPU while events were offered, as a share of one core (None: not
    # readable here): the latency depends on how busy it is.
    broker_cpu: float | None = None
    broker: str = "embedded broker"
    # The router's transactions setting in every phase of the run.
    transactions: Transactions = "off"

    @property
    def outputs(self) -> int:
        """Output messages the router wrote for the events (the same every round)."""
        return self.pairs[0].outputs

    @property
    def router_eps(self) -> float:
        """The single-process router's events/s, median over the rounds."""
        return statistics.median(p.router_eps for p in self.pairs)

    @property
    def raw_eps(self) -> float:
        """The raw pipe's events/s, median over the rounds."""
        return statistics.median(p.raw_eps for p in self.pairs)

    @property
    def ratio(self) -> float:
        """Median over the rounds of router / raw pipe measured side by side.

        This machine's speed drifts by up to a factor of two within minutes, so
        each ratio compares runs taken back to back, not the two medians.
        """
        return statistics.median(p.ratio for p in self.pairs)


async def run(
    events: int,
    *,
    rate: float,
    duration: float,
    seed: int,
    echo: Echo,
    workers: int = 2,
    rounds: int = 2,
    brokers: Brokers | None = None,
    transactions: Transactions = "off",
) -> Figures:
    """Run every phase on ``brokers`` (default: the embedded one) and return the figures.

    On the embedded broker each phase has a fresh one: it slows down as stored
    batches pile up, which would penalise later phases. ``transactions`` is the
    router's setting ("on" needs a broker with transactions: Apache Kafka).
    """
    where = brokers or Embedded()
    echo(f"-- {where.label}, transactions {transactions}")
    with tempfile.TemporaryDirectory() as tmp:
        hub = HubSettings(state_dir=Path(tmp) / "router")
        catalog = Catalog.load(hub.schemas_dir)
        policy = load_policy(hub.policy_dir, catalog)
        inputs = Traffic(seed, lambda: datetime.now(UTC)).take(events)
        bench = _Bench(catalog, policy, inputs, Path(tmp), echo, where, transactions)

        async with bench.phase("workers") as phase:
            kafka = phase.kafka
            # The processes join an idle group first, so no rebalance happens while
            # they route (a rebalance would make them re-read records).
            many = Workers(bench.settings(kafka, "workers"), workers)
            many.start()
            try:
                await many.ready(limit=120)
                await bench.publish(kafka)
                run_ = await many.routed(events, limit=300)
            finally:
                many.stop()
        workers_eps = run_.records / run_.seconds
        echo(f"router, {workers} processes: {workers_eps:,.0f} events/s")

        pairs = [await bench.pair(events, n) for n in range(1, rounds + 1)]

        # Last: a freshly started Apache Kafka is slow in its first seconds of load
        # (its JVM compiles the hot paths), which the throughput phases absorb.
        async with bench.phase("latency") as phase:
            latencies, broker_cpu = await _latency_phase(
                bench.settings(phase.kafka, "latency"),
                catalog,
                policy=policy,
                seed=seed,
                rate=rate,
                duration=duration,
                phase=phase,
            )
        echo(f"latency at {rate:,.0f}/s measured over {len(latencies)} events")
    p50, p99 = _percentiles(latencies)
    fifths = [
        latencies[k * len(latencies) // 5 : (k + 1) * len(latencies) // 5]
        for k in range(5)
    ]
    return Figures(
        events, workers, workers_eps, tuple(pairs), len(latencies),
        rate, p50, p99, tuple(_percentiles(f)[1] for f in fifths), broker_cpu,
        where.label, transactions,
    )  # fmt: skip


@dataclass
class _Bench:
    """What every phase shares: the inputs, the policy, where state goes."""

    catalog: Catalog
    policy: Policy
    inputs: list[SimEvent]
    tmp: Path
    echo: Echo
    brokers: Brokers
    transactions: Transactions

    def phase(self, phase: str) -> contextlib.AbstractAsyncContextManager[Phase]:
        """The broker for ``phase``: every hub topic, the phase's group at the end."""
        return self.brokers.phase(
            _wanted_topics(self.policy, self.inputs), [_group(phase)]
        )

    async def publish(self, kafka: KafkaSettings) -> None:
        """Publish the inputs and say how long it took."""
        started = time.perf_counter()
        await _produce(kafka, self.catalog, self.inputs)
        seconds = time.perf_counter() - started
        self.echo(f"published {len(self.inputs)} events in {seconds:.1f}s")

    async def pair(self, events: int, number: int) -> Pair:
        """The router on a fresh broker, then the raw pipe on another."""
        async with self.phase(f"single-{number}") as phase:
            await self.publish(phase.kafka)
            router_eps, outputs = await _router_phase(
                self.settings(phase.kafka, f"single-{number}"), events
            )
        async with self.phase(f"raw-{number}") as phase:
            await self.publish(phase.kafka)
            raw_eps = await _raw_phase(
                phase.kafka, events, outputs, _group(f"raw-{number}")
            )
        pair = Pair(router_eps, raw_eps, outputs)
        self.echo(
            f"round {number}: router, 1 process {router_eps:,.0f} events/s "
            f"({outputs} outputs); raw aiokafka pipe {raw_eps:,.0f} events/s; "
            f"ratio {pair.ratio:.2f}"
        )
        return pair

    def settings(self, kafka: KafkaSettings, phase: str) -> RouterSettings:
        """Router settings with a de-duplication memory of the phase's own."""
        return RouterSettings(
            group_id=_group(phase),
            transactions=self.transactions,
            port=free_port(),
            hub=HubSettings(state_dir=self.tmp / phase),
            kafka=kafka,
        )


def _group(phase: str) -> str:
    return f"bench-{phase}"


def _wanted_topics(policy: Policy, inputs: list[SimEvent]) -> Mapping[str, int]:
    wanted = runtime_topics.plan(
        TopicSettings(), policy.publish_rights, policy.receive_rights
    )
    partitions = TopicSettings().inbound_partitions
    for event in inputs:  # bad inputs may target topics no right creates
        wanted.setdefault(event.topic, partitions)
    wanted[RAW_SINK] = 4
    return wanted


async def _produce(
    kafka: KafkaSettings, catalog: Catalog, inputs: list[SimEvent]
) -> None:
    producer = AIOKafkaProducer(**producer_config(kafka, "bench-ministries"))
    await producer.start()
    try:
        pending = [
            await producer.send(
                e.topic,
                e.value(catalog),
                key=(e.event_id or "").encode(),
                headers=e.headers(),
            )
            for e in inputs
        ]
        await asyncio.gather(*pending)
    finally:
        await producer.stop()


async def _router_phase(settings: RouterSettings, events: int) -> tuple[float, int]:
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        await _wait_for(lambda: service.router.stats.records >= events, seconds=300)
        stats = service.router.stats
        seconds = (stats.last_finished or 0.0) - (stats.first_started or 0.0)
        return stats.records / seconds, stats.outputs
    finally:
        await service.stop()


async def _raw_phase(
    kafka: KafkaSettings, events: int, outputs: int, group: str
) -> float:
    consumer = AIOKafkaConsumer(**consumer_config(kafka, group, "bench-raw"))
    producer = AIOKafkaProducer(**producer_config(kafka, "bench-raw"))
    consumer.subscribe(pattern=r"hub\.in\..*")
    await consumer.start()
    await producer.start()
    try:
        done = written = 0
        first: float | None = None
        while done < events:
            batch = await consumer.getmany(timeout_ms=500, max_records=500)
            if not batch:
                continue
            first = first or time.perf_counter()
            pending = []
            for records in batch.values():
                for record in records:
                    done += 1
                    # Spread the router's output count evenly over the inputs.
                    due = outputs * done // events
                    while written < due:
                        pending.append(await producer.send(RAW_SINK, record.value))
                        written += 1
            await asyncio.gather(*pending)
            await consumer.commit()
        return done / (time.perf_counter() - (first or 0.0))
    finally:
        await consumer.stop()
        await producer.stop()


async def _latency_phase(
    settings: RouterSettings,
    catalog: Catalog,
    *,
    policy: Policy,
    seed: int,
    rate: float,
    duration: float,
    phase: Phase,
) -> tuple[list[float], float | None]:
    """Offer events at ``rate`` to a router in its own process; time first deliveries.

    Also returns the broker's CPU while the events were offered, as a share of a core.
    """
    offered = Traffic(seed + 1, lambda: datetime.now(UTC), bad_share=0.0).take(
        int(rate * duration)
    )
    delivered = {e.event_id for e in offered if _delivers(catalog, policy, e)}
    router = Workers(settings, 1)
    router.start()
    watcher = _Watcher(settings.kafka)
    cpu: CpuReader = phase.cpu_seconds
    try:
        await router.ready(limit=120)
        await watcher.start()
        before, started = cpu(), time.perf_counter()
        sent = await _offer(settings.kafka, catalog, offered, rate)
        after, seconds = cpu(), time.perf_counter() - started
        seen = await watcher.collect(delivered, seconds=duration + 30)
    finally:
        await watcher.stop()
        router.stop()
    # In the order they were offered, so the run can be cut into periods.
    ids = sorted((i for i in delivered if i in seen and i in sent), key=sent.__getitem__)
    share = None if before is None or after is None else (after - before) / seconds
    return [seen[i] - sent[i] for i in ids], share


def _delivers(catalog: Catalog, policy: Policy, event: SimEvent) -> bool:
    datum = codec_for(catalog.get(event.event_type)).to_datum(event.body)
    return any(d.delivered for d in policy.decide(event.event_type, datum))


async def _offer(
    kafka: KafkaSettings, catalog: Catalog, offered: list[SimEvent], rate: float
) -> dict[str | None, float]:
    # Encoded up front: the bench process shares the CPUs with the router, and
    # encoding while offering would slow the router it measures.
    prepared = [
        (e.event_id, e.topic, e.value(catalog), (e.event_id or "").encode(), e.headers())
        for e in offered
    ]
    # The measuring process must not pause either: unfrozen, its full collections
    # over the prepared events took up to 150 ms and showed up as latency.
    tune_gc()
    producer = AIOKafkaProducer(**producer_config(kafka, "bench-offered"))
    await producer.start()
    sent: dict[str | None, float] = {}
    try:
        # Long-running publishers know their topics: no metadata wait in the clock.
        topics = {e.topic for e in offered}
        await asyncio.gather(*(producer.partitions_for(t) for t in topics))
        start = time.perf_counter()
        pending = []
        for index, (event_id, topic, value, key, headers) in enumerate(prepared):
            delay = start + index / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            sent[event_id] = time.perf_counter()
            pending.append(await producer.send(topic, value, key=key, headers=headers))
        await asyncio.gather(*pending)
    finally:
        await producer.stop()
    return sent


class _Watcher:
    """A recipient-side consumer of every hub.out topic, noting first arrivals."""

    def __init__(self, kafka: KafkaSettings) -> None:
        # A recipient that wants low latency fetches with a short wait, as the router;
        # it reads committed records only, as recipients do.
        quick = kafka.model_copy(update={"fetch_max_wait_ms": WATCHER_FETCH_WAIT_MS})
        self.kafka = kafka
        self.consumer = AIOKafkaConsumer(**consumer_config(quick, None, "bench-watcher"))
        self.seen: dict[str, float] = {}
        self._task: asyncio.Task[None] | None = None

    async def start(self) -> None:
        await self.consumer.start()
        existing = await self.consumer.topics()
        # The partitions asked of the broker: the consumer's metadata may predate
        # topics created a moment ago.
        partitions = await partitions_of(
            self.kafka, sorted(t for t in existing if t.startswith("hub.out."))
        )
        self.consumer.assign(partitions)
        # Past what earlier phases and runs delivered: the offered events' ids are
        # the same in every run of a seed, and a broker may be reused. Positions are
        # resolved now, before any event is timed.
        await self.consumer.seek_to_end(*partitions)
        for partition in partitions:
            await self.consumer.position(partition)
        self._task = asyncio.create_task(self._run())

    async def _run(self) -> None:
        while True:
            batch = await self.consumer.getmany(timeout_ms=100)
            now = time.perf_counter()
            for records in batch.values():
                for record in records:
                    event_id = event_id_of(record.headers)
                    if event_id is not None:
                        self.seen.setdefault(event_id, now)

    async def collect(self, wanted: set[str | None], seconds: float) -> dict[str, float]:
        deadline = time.monotonic() + seconds
        # Polls what the watcher task fills in.
        while time.monotonic() < deadline and not all(w in self.seen for w in wanted):  # noqa: ASYNC110
            await asyncio.sleep(0.1)
        return self.seen

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
        await self.consumer.stop()


async def _wait_for(done: Callable[[], bool], seconds: float) -> None:
    deadline = time.monotonic() + seconds
    while not done():
        if time.monotonic() > deadline:
            raise TimeoutError("the router did not finish in time")
        await asyncio.sleep(0.02)


def _percentiles(latencies: list[float]) -> tuple[float, float]:
    if len(latencies) < 2:
        return float("nan"), float("nan")
    cuts = statistics.quantiles(latencies, n=100, method="inclusive")
    return cuts[49] * 1000, cuts[98] * 1000
