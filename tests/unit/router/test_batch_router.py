"""The batch router's bookkeeping around one batch: what it holds, hands over, drops."""

from __future__ import annotations

import uuid
from collections.abc import AsyncIterator
from datetime import datetime
from pathlib import Path
from typing import Any, cast

import pytest
from aiokafka import AIOKafkaProducer
from aiokafka.errors import KafkaConnectionError
from aiokafka.structs import ConsumerRecord
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.router.dedupe import DedupeStore
from services.router.metrics import RouterMetrics
from services.router.pipeline import Accepted, Inbound, Pipeline
from services.router.routing import SLICE, BatchRouter
from tests.unit.router.standins import record


@pytest.fixture
async def router(
    pipeline: Pipeline, tmp_path: Path, registry: CollectorRegistry
) -> AsyncIterator[BatchRouter]:
    # No sender task runs (start() is not called): the outputs stay in the outbox.
    producer = cast(AIOKafkaProducer, object())
    store = DedupeStore(tmp_path / "dedupe.sqlite")
    yield BatchRouter(
        pipeline=pipeline,
        store=store,
        producer=producer,
        metrics=RouterMetrics(registry),
        institutions={"dgme", "conapina", "minsal"},
        group="test",
    )
    store.close()


TOPIC = "hub.in.dgme.return_arrival"


def _records(catalog: Catalog, count: int) -> tuple[list[Any], list[str]]:
    """``count`` consumed records of valid events on one partition, and their ids."""
    ids = [str(uuid.uuid4()) for _ in range(count)]
    records = []
    for offset, event_id in enumerate(ids):
        inbound = record(catalog, TOPIC, event_id=event_id)
        value = inbound.value or b""
        consumed = ConsumerRecord(
            TOPIC,
            0,
            offset,
            inbound.timestamp_ms,
            0,
            None,
            value,
            None,
            0,
            len(value),
            [],
        )
        records.append(consumed)
    return records, ids


async def test_a_routed_batch_is_held_in_the_air_until_acknowledged(
    router: BatchRouter, catalog: Catalog
) -> None:
    records, ids = _records(catalog, SLICE + 3)  # more than one slice
    await router.route(records)
    assert sorted(router.committer.in_flight(ids)) == sorted(ids)
    assert router.committer.pending == 1


async def test_an_event_the_hub_fails_to_route_is_rejected_and_not_held(
    router: BatchRouter,
    catalog: Catalog,
    registry: CollectorRegistry,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def fail(accepted: Accepted, now: datetime) -> list[Any]:
        raise RuntimeError("a bug")

    monkeypatch.setattr(router.pipeline, "deliver", fail)
    records, ids = _records(catalog, 2)
    await router.route(records)
    # Sent again, the event is routed again rather than taken for a duplicate.
    assert router.committer.in_flight(ids) == {}
    parcel = router._outbox.get_nowait()
    assert [o.kind for o in parcel.outputs] == ["rejection", "rejection"]
    assert registry.get_sample_value("puente_router_errors_total") == 2


async def test_a_rewind_while_deciding_hands_nothing_over(
    router: BatchRouter, catalog: Catalog, monkeypatch: pytest.MonkeyPatch
) -> None:
    inspect = router.pipeline.inspect

    def inspect_then_fail(inbound: Inbound, now: datetime) -> Any:
        if inbound.offset == SLICE - 1:  # the broker fails while the batch is decided
            router.committer.rewind(KafkaConnectionError("broker gone"))
        return inspect(inbound, now)

    monkeypatch.setattr(router.pipeline, "inspect", inspect_then_fail)
    records, ids = _records(catalog, SLICE * 2)
    await router.route(records)
    assert router.committer.pending == 0
    assert router._outbox.empty()
    assert router.committer.in_flight(ids) == {}
