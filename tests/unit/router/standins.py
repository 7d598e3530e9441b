"""Stand-ins for the router's collaborators: a small policy, fixed keys, records."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

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
