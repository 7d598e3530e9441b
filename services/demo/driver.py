"""Simulated ministries publishing at a steady rate onto ``hub.in.*``.

The sequence comes from `services.sim.traffic.Traffic` and depends only on the
seed; the clock stamps times. Pacing counts events due since the start, so a slow
tick is caught up on the next one instead of lowering the rate.

The simulator dates a day's records back from the moment they are handed out (a
flight's passengers were interviewed hours ago, a referral was answered days
later). The demo sends each good event as a ministry that publishes the moment it
records would: ``recorded_at`` and ``published_at`` become the time of sending,
everything else stays. The hub's latency series then measure the hub, not the
simulated backlog.
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import math
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Final

from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaError

from services.contracts import headers as ce
from services.contracts.catalog import Catalog
from services.contracts.errors import PuenteError
from services.contracts.natural import format_timestamp
from services.demo.tally import Published
from services.runtime import topic_admin as runtime_topics
from services.runtime.settings import TopicSettings
from services.sim.traffic import PUBLISH_RIGHTS, UNAUTHORISED, SimEvent, Traffic

CLIENT_ID: Final = "puente-demo"


class DemoError(PuenteError):
    """The demo cannot go on (a service did not start, the broker refused inputs)."""


@dataclass(frozen=True, slots=True)
class Outgoing:
    """One Kafka record a simulated ministry sends, with what the demo counts it as."""

    topic: str
    key: bytes
    value: bytes
    headers: ce.KafkaHeaders
    event_id: str
    source: str
    event_type: str
    expected_reason: str | None


def outgoing(sim: SimEvent, catalog: Catalog) -> Outgoing:
    """The record for ``sim``, keyed as a ministry's client keys it.

    Referrals are keyed by ``referral_id`` so a lifecycle stays in order on one
    partition (and a resent event lands behind its original); other events by id.
    """
    if sim.body is None:
        event_id = sim.raw_id or ""
        key = event_id
    else:
        event_id = str(sim.body["envelope"]["event_id"])
        referral_id = sim.body["payload"].get("referral_id")
        key = str(referral_id) if sim.event_type == "referral" else event_id
    return Outgoing(
        topic=sim.topic,
        key=key.encode(),
        value=sim.value(catalog),
        headers=sim.headers(),
        event_id=event_id,
        source=sim.source,
        event_type=sim.event_type,
        expected_reason=sim.expected_reason,
    )


def demo_topics(settings: TopicSettings) -> dict[str, int]:
    """Every inbound topic the simulator writes, the unauthorised ones included.

    The policy creates topics only for rights it grants; the topics of inputs sent
    without a right must exist before the router subscribes, or its pattern would
    see them only after the next metadata refresh.
    """
    rights: dict[str, set[str]] = {s: set(t) for s, t in PUBLISH_RIGHTS.items()}
    for source, event_type in UNAUTHORISED:
        rights.setdefault(source, set()).add(event_type)
    return runtime_topics.plan(settings, rights, {})


def as_published_now(sim: SimEvent, moment: datetime) -> SimEvent:
    """``sim`` recorded and published at ``moment``; bad inputs stay exactly as built."""
    if sim.body is None or sim.is_bad:
        return sim
    stamp = format_timestamp(moment)
    envelope = {**sim.body["envelope"], "recorded_at": stamp, "published_at": stamp}
    return dataclasses.replace(sim, body={**sim.body, "envelope": envelope})


def due(elapsed: float, rate: float) -> int:
    """How many events a steady ``rate`` per second has sent after ``elapsed`` s."""
    return max(0, math.floor(elapsed * rate))


class Driver:
    """Takes simulated inputs in order and publishes them at ``rate`` per second."""

    def __init__(
        self,
        catalog: Catalog,
        seed: int,
        rate: float,
        *,
        bad_share: float = 0.02,
        now_fn: Callable[[], datetime] = lambda: datetime.now(UTC),
        tick: float = 0.1,
    ) -> None:
        if rate <= 0:
            raise DemoError(f"the rate must be above 0 events/s, not {rate}")
        self.catalog = catalog
        self.rate = rate
        self.tick = tick
        self.published = Published()
        self._now = now_fn
        self._traffic = Traffic(seed, now_fn, bad_share=bad_share)
        self._taken = 0

    def take(self, count: int) -> list[Outgoing]:
        """The next ``count`` records, in the simulator's order."""
        self._taken += count
        return [
            outgoing(as_published_now(next(self._traffic), self._now()), self.catalog)
            for _ in range(count)
        ]

    async def run(
        self, producer: AIOKafkaProducer, stop: asyncio.Event, duration: float | None
    ) -> None:
        """Publish until ``stop`` is set, or exactly ``duration`` seconds' worth."""
        loop = asyncio.get_running_loop()
        started = loop.time()
        while not stop.is_set():
            elapsed = loop.time() - started
            ended = duration is not None and elapsed >= duration
            if duration is not None:
                elapsed = min(elapsed, duration)
            await self._send(producer, self.take(due(elapsed, self.rate) - self._taken))
            if ended:
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), self.tick)

    async def _send(self, producer: AIOKafkaProducer, batch: Iterable[Outgoing]) -> None:
        batch = list(batch)
        try:
            pending = [
                await producer.send(o.topic, o.value, key=o.key, headers=o.headers)
                for o in batch
            ]
            await asyncio.gather(*pending)
        except KafkaError as e:
            raise DemoError(f"the broker refused simulated inputs: {e}") from e
        for o in batch:
            self.published.count(o.source, o.event_type, o.expected_reason)
