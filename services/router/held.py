"""Inbound partitions held at a refusal whose rejection topic is missing.

A record the router refuses is answered on ``hub.rejected.<source>``. A source can
have an inbound topic and no rejection topic: an admin made ``hub.in.<x>.*`` for an
id the policy does not name, or the policy dropped an institution whose topics
remain. Sent anyway, such a refusal waits for the topic's metadata, its batch fails
and is routed again, and every source's routing stops.

So before a refusal is sent, its rejection topic must exist. A missing one is
created where the broker lets the router (the embedded broker, a development
cluster); where it does not (production: no CREATE right, no auto-creation) the
partition is held at that record: sought back, paused and never committed past it,
counted on ``puente_router_partitions_held`` and named in one ERROR line. Every
other partition goes on routing. The missing topic is asked for again with back-off,
and the partition resumes once the topic exists.

A topic deleted after the router has seen it fails the send of its refusals instead;
the failed batch's rejection topics are forgotten (`RejectionTopics.forget`), so the
batch, routed again, creates the topic or holds its partition the same way.
"""

from __future__ import annotations

import logging
import time
from collections import Counter
from collections.abc import Awaitable, Callable, Collection, Iterable
from typing import Final, Protocol

from aiokafka import TopicPartition
from prometheus_client import Gauge

from services.contracts.errors import PuenteError
from services.runtime.consume import Backoff

log = logging.getLogger(__name__)

# A refused creation is tried again after 1 s, doubling up to a minute: cheap for the
# broker, and a held partition resumes within a minute of its topic appearing.
RETRY: Final = Backoff(first=1.0, most=60.0)
# How often the held partitions are looked at (only due topics are asked for).
TICK_SECONDS: Final = 1.0

Create = Callable[[str], Awaitable[object]]


class PausingConsumer(Protocol):
    """What holding a partition needs of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""

    def pause(self, *partitions: TopicPartition) -> None:
        """Fetch nothing more of ``partitions``."""

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch ``partitions`` again."""


class RejectionTopics:
    """Which rejection topics exist; a missing one is created if the broker lets us.

    ``create`` creates one topic unless it exists (and raises if it cannot). A topic
    found or created once is taken to exist from then on. After a failed attempt the
    topic counts as missing, without asking, until its back-off has passed.
    """

    def __init__(
        self,
        create: Create,
        *,
        retry: Backoff = RETRY,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._create = create
        self._retry = retry
        self._clock = clock
        self._present: set[str] = set()
        self._failures: Counter[str] = Counter()
        self._next_try: dict[str, float] = {}
        self.why: dict[str, str] = {}  # missing topic -> why its last attempt failed

    def exist(self, names: Iterable[str]) -> None:
        """Take ``names`` as existing (the topics the router was started with)."""
        self._present.update(names)

    def forget(self, names: Iterable[str]) -> None:
        """Stop taking ``names`` as existing: a send to them failed.

        An admin may delete a topic the router has seen; the next refusal for it
        asks again, and creates it or holds its partition as for a missing one.
        """
        self._present.difference_update(names)

    def known(self, name: str) -> bool:
        """Whether ``name`` is known to exist, without asking the broker."""
        return name in self._present

    async def missing(self, names: Collection[str]) -> set[str]:
        """Those of ``names`` that do not exist and could not be created now."""
        missing: set[str] = set()
        for name in sorted(set(names) - self._present):
            if self._clock() < self._next_try.get(name, 0.0) or not await self._try(name):
                missing.add(name)
        return missing

    async def _try(self, name: str) -> bool:
        try:
            await self._create(name)
        except Exception as e:  # noqa: BLE001 - any failure: hold, try again later
            self._failures[name] += 1
            self._next_try[name] = self._clock() + self._retry.after(self._failures[name])
            # Our own errors name topic and broker only; others by their type alone.
            self.why[name] = str(e) if isinstance(e, PuenteError) else type(e).__name__
            return False
        self._present.add(name)
        self._failures.pop(name, None)
        self._next_try.pop(name, None)
        self.why.pop(name, None)
        return True


class HeldPartitions:
    """The inbound partitions held, each with the rejection topic it waits for."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self.waiting: dict[TopicPartition, str] = {}

    def hold(
        self,
        consumer: PausingConsumer | None,
        tp: TopicPartition,
        offset: int,
        topic: str,
        why: str,
    ) -> None:
        """Pause ``tp`` at ``offset`` until ``topic`` exists; log it once."""
        if consumer is not None and tp in consumer.assignment():
            consumer.seek(tp, offset)
            consumer.pause(tp)
        if self.waiting.get(tp) != topic:
            # Names and offsets only: the record itself may hold personal data.
            log.error(
                "%s[%d] held at offset %d: a record there is refused and its rejection "
                "topic %s does not exist (%s). Create %s and the partition resumes by "
                "itself; no record of it is lost, and every other partition goes on "
                "routing",
                tp.topic, tp.partition, offset, topic, why, topic,
            )  # fmt: skip
        self.waiting[tp] = topic
        self._count()

    async def recheck(
        self, consumer: PausingConsumer | None, topics: RejectionTopics
    ) -> None:
        """Resume the partitions whose topic now exists; forget ones moved away."""
        if not self.waiting:
            return
        held = consumer.assignment() if consumer is not None else set()
        for tp in [tp for tp in self.waiting if tp not in held]:
            del self.waiting[tp]  # its next holder reads it from the committed offset
        missing = await topics.missing(set(self.waiting.values()))
        ready = [tp for tp, topic in self.waiting.items() if topic not in missing]
        for tp in ready:
            log.info(
                "%s[%d] resumes: %s exists", tp.topic, tp.partition, self.waiting[tp]
            )
            del self.waiting[tp]
        if ready and consumer is not None:
            consumer.resume(*ready)
        self._count()

    def _count(self) -> None:
        # One series, always exported: a label per topic would appear only once a
        # partition is held, and alert rules could not tell "none" from "not running".
        self._gauge.set(len(self.waiting))
