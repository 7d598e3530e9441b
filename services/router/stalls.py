"""Partitions held back because a refusal of theirs has nowhere to go.

A record the router refuses is answered on ``hub.rejected.<source>``. Apache Kafka
creates no topic on its own, so an inbound topic of a source without that topic (an
id the policy does not name, or no longer names) yields refusals that cannot be
written: sent anyway, the send waits for metadata, the batch fails, is routed again,
and every source's routing stops. Instead the router leaves such a partition paused
at the record, uncommitted (the record stays on its topic for an operator), and
routes every other partition; once the rejection topic exists it resumes.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Iterable
from typing import Any, Final, Protocol

from aiokafka import TopicPartition
from prometheus_client import Gauge

log = logging.getLogger(__name__)

# How long a topic found missing counts as missing before the broker is asked again.
RECHECK_SECONDS: Final = 15.0


class PausingConsumer(Protocol):
    """What holding a partition back needs of an aiokafka consumer."""

    def assignment(self) -> set[TopicPartition]:
        """The partitions this consumer holds."""

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Read ``partition`` from ``offset`` next."""

    def pause(self, *partitions: TopicPartition) -> None:
        """Fetch nothing more of ``partitions``."""

    def resume(self, *partitions: TopicPartition) -> None:
        """Fetch ``partitions`` again."""


class TopicCheck:
    """Which topics exist: the producer's cached metadata, else the cluster's list.

    For topics the producer does not know, one all-topics metadata request is made
    per ``recheck`` seconds. Asking the producer for one unknown topic's partitions
    would wait for it until the request times out: the stall this module avoids.
    """

    def __init__(self, producer: Any, recheck: float = RECHECK_SECONDS) -> None:
        self.producer = producer
        self._recheck = recheck
        self._present: set[str] = set()
        self._listed: frozenset[str] = frozenset()
        self._listed_at = -math.inf

    async def missing(self, names: Iterable[str], *, fresh: bool = False) -> set[str]:
        """Those of ``names`` the cluster does not hold (``fresh``: ask it now)."""
        cluster = self.producer.client.cluster
        unknown = {
            n
            for n in names
            if n not in self._present and cluster.partitions_for_topic(n) is None
        }
        if not unknown:
            return set()
        if fresh or time.monotonic() - self._listed_at >= self._recheck:
            metadata = await self.producer.client.fetch_all_metadata()
            self._listed = frozenset(metadata.topics())
            self._listed_at = time.monotonic()
        found = unknown & self._listed
        self._present |= found
        return unknown - found


class Stalls:
    """The partitions held back, each with the topic it waits for."""

    def __init__(self, gauge: Gauge) -> None:
        self._gauge = gauge
        self.waiting: dict[TopicPartition, str] = {}

    def hold(
        self,
        consumer: PausingConsumer | None,
        tp: TopicPartition,
        offset: int,
        topic: str,
    ) -> None:
        """Pause ``tp`` at ``offset`` until ``topic`` exists."""
        if consumer is not None and tp in consumer.assignment():
            consumer.seek(tp, offset)
            consumer.pause(tp)
        if self.waiting.get(tp) != topic:
            # Names and offsets only: the record itself may hold personal data.
            log.error(
                "%s[%d] stopped at offset %d: a record there is refused, and its "
                "rejection topic %s does not exist; create it to resume this partition "
                "(every other partition goes on routing)",
                tp.topic,
                tp.partition,
                offset,
                topic,
            )
        self.waiting[tp] = topic
        self._gauge.set(len(self.waiting))

    async def recheck(self, consumer: PausingConsumer | None, check: TopicCheck) -> None:
        """Resume the partitions whose topic now exists; forget ones moved away."""
        if not self.waiting:
            return
        held = consumer.assignment() if consumer is not None else set()
        for tp in [tp for tp in self.waiting if tp not in held]:
            del self.waiting[tp]  # its new owner holds it back itself
        missing = await check.missing(set(self.waiting.values()), fresh=True)
        ready = [tp for tp, topic in self.waiting.items() if topic not in missing]
        for tp in ready:
            del self.waiting[tp]
            log.info("%s[%d] resumes: its rejection topic exists", tp.topic, tp.partition)
        if ready and consumer is not None:
            consumer.resume(*ready)
        self._gauge.set(len(self.waiting))
