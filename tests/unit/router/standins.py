"""Stand-ins for the router's collaborators: a small policy, fixed keys, records."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

from aiokafka import TopicPartition
from aiokafka.structs import ConsumerRecord

from services.contracts import codec
from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.natural import codec_for
from services.router.pipeline import Inbound, Limits, Pipeline
from tests.samples import minimal

NOW = datetime(2026, 11, 2, 15, 0, tzinfo=UTC)


@dataclass
class WholeRecord:
    entry: SchemaEntry
    field_paths: tuple[str, ...] = ("payload",)
    payload_verbatim: bool = True
    payload_key: tuple[Any, ...] = ("whole",)

    @property
    def source(self) -> SchemaEntry:
        return self.entry

    def apply(
        self,
        datum: Mapping[str, Any],
        subject_key: str | None,
        ids: Callable[[str], str] | None = None,
    ) -> Any:
        envelope = dict(datum["envelope"], subject_key=subject_key)
        if ids is not None:
            envelope["event_id"] = ids(envelope["event_id"])
        return {**datum, "envelope": envelope}


@dataclass
class StandInDecision:
    rule_id: str
    recipient: str
    view: str
    projection: WholeRecord
    delivered: bool = True
    withheld_reason: str | None = None
    purpose: str = "CHILD_PROTECTION"
    legal_basis: str = "BEST_INTEREST_OF_CHILD"


class StandInPolicy:
    version = "sha256:test"

    def __init__(self, catalog: Catalog) -> None:
        self.catalog = catalog

    def may_publish(self, source: str, event_type: str) -> bool:
        return source == "dgme"

    def knows(self, institution: str) -> bool:
        return institution in {"dgme", "conapina", "minsal"}

    def decide(
        self, event_type: str, datum: Mapping[str, Any], version: int | None = None
    ) -> list[Any]:
        whole = WholeRecord(self.catalog.get(event_type))
        return [
            StandInDecision("child", "conapina", "FULL", whole),
            StandInDecision("stats", "minsal", "PSEUDO", whole),
            StandInDecision(
                "jobs", "mtps", "IDENT", whole, False, "consent_scope_missing"
            ),
        ]


class StandInKeys:
    def subject_key(
        self, event_type: str, datum: Mapping[str, Any]
    ) -> tuple[str | None, str]:
        return "k1:hub", "DUI"

    def rekey(self, recipient: str, subject_key: str) -> str:
        return f"{subject_key}:{recipient}"

    def recipient_id(self, recipient: str, value: str) -> str:
        return str(uuid.uuid5(uuid.NAMESPACE_URL, f"{recipient}/{value}"))


def stand_in_pipeline(catalog: Catalog) -> Pipeline:
    """A pipeline with the stand-in policy and keys and small limits."""
    limits = Limits(max_event_bytes=4096, future_skew=timedelta(minutes=5))
    return Pipeline(catalog, StandInPolicy(catalog), StandInKeys(), limits)


def record(catalog: Catalog, topic: str, **envelope: Any) -> Inbound:
    """A minimal valid return arrival published on ``topic`` (a fresh event id)."""
    entry = catalog.get("return_arrival")
    natural = minimal(entry, source_institution_id="dgme", **envelope)
    value = codec.encode(entry, codec_for(entry).to_datum(natural))
    return Inbound(topic, 0, 7, None, value, 1_700_000_000_000)


# A source the policy does not name beside a member, for the held-partition tests.
GHOST = TopicPartition("hub.in.ghost.referral", 0)
MEMBER = TopicPartition("hub.in.dgme.return_arrival", 0)
REJECTED = "hub.rejected.ghost"
HELD = "puente_router_partitions_held"


class HoldingConsumer:
    """Records seeks, pauses and resumes of the partitions it holds."""

    def __init__(self, held: set[TopicPartition] | None = None) -> None:
        self.held = {GHOST, MEMBER} if held is None else held
        self.positions: dict[TopicPartition, int] = {}
        self.paused: set[TopicPartition] = set()

    def assignment(self) -> set[TopicPartition]:
        """The partitions it holds."""
        return set(self.held)

    def seek(self, partition: TopicPartition, offset: int) -> None:
        """Note where ``partition`` is read next."""
        self.positions[partition] = offset

    def pause(self, *partitions: TopicPartition) -> None:
        """Note ``partitions`` paused."""
        self.paused.update(partitions)

    def resume(self, *partitions: TopicPartition) -> None:
        """Note ``partitions`` resumed."""
        self.paused.difference_update(partitions)

    async def commit(self, offsets: dict[TopicPartition, int]) -> None:
        """Commits are not what these tests look at."""
        del offsets


def consumed(tp: TopicPartition, offset: int, value: bytes) -> Any:
    """A fetched record of ``tp`` at ``offset``."""
    return ConsumerRecord(
        tp.topic, tp.partition, offset, 1_700_000_000_000, 0, None, value, None, 0,
        len(value), [],
    )  # fmt: skip


def stranger_batch(catalog: Catalog) -> list[Any]:
    """Interleaved: a member's events at 0-2, a stranger's records at 5-7."""
    batch = []
    for n in range(3):
        member = record(catalog, MEMBER.topic, event_id=str(uuid.uuid4()))
        batch.append(consumed(MEMBER, n, member.value or b""))
        batch.append(consumed(GHOST, 5 + n, b"\x00not avro %d" % n))
    return batch
