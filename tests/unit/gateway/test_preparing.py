"""Batch preparation in a worker process gives exactly what the gateway computes."""

from __future__ import annotations

import copy
from typing import Any

import orjson

from services.contracts.catalog import Catalog
from services.contracts.samples import minimal_event
from services.gateway.outbox import Entry
from services.gateway.preparing import (
    POOL_FROM_BYTES,
    Preparer,
    Refusal,
    prepare_batch,
)
from services.runtime.settings import REPO_ROOT

ALLOWED = frozenset({"return_arrival", "referral"})
SCHEMAS = REPO_ROOT / "schemas"


def mixed_body(catalog: Catalog, size: int) -> bytes:
    events: list[Any] = [
        minimal_event(catalog.get("return_arrival"), "dgme") for _ in range(size)
    ]
    bad = copy.deepcopy(events[3])
    bad["payload"]["person_profile"]["sex"] = "F"
    events[3] = bad
    events[5] = minimal_event(catalog.get("border_crossing"), "dgme")  # no right
    events[7] = {"envelope": {"event_type": "nope"}}
    events[9] = minimal_event(catalog.get("return_arrival"), "minsal")  # not the caller
    return orjson.dumps({"events": events})


async def test_a_large_batch_prepared_in_a_worker_equals_preparing_it_in_place(
    catalog: Catalog,
) -> None:
    body = mixed_body(catalog, 60)
    assert len(body) >= POOL_FROM_BYTES
    preparer = Preparer(catalog, SCHEMAS, workers=1)
    preparer.start()
    try:
        in_worker = await preparer.prepare("dgme", ALLOWED, body, 500)
    finally:
        preparer.stop()
    in_place = prepare_batch(preparer.types, "dgme", ALLOWED, body, 500)

    assert in_worker == in_place
    assert isinstance(in_worker, list)
    statuses = [o if isinstance(o, Entry) else o["status"] for o in in_worker[3:10:2]]
    assert statuses == [422, 403, 404, 403]
    assert sum(isinstance(o, Entry) for o in in_worker) == 60 - 4


async def test_a_worker_refuses_a_body_as_the_gateway_would(catalog: Catalog) -> None:
    preparer = Preparer(catalog, SCHEMAS, workers=1)
    preparer.start()
    try:
        too_many = await preparer.prepare("dgme", ALLOWED, mixed_body(catalog, 60), 50)
        malformed = await preparer.prepare("dgme", ALLOWED, b"{" * POOL_FROM_BYTES, 500)
    finally:
        preparer.stop()

    assert too_many == Refusal("too_many", count=60)
    assert isinstance(malformed, Refusal)
    assert malformed.kind == "malformed_json"


async def test_without_workers_every_batch_is_prepared_in_place(
    catalog: Catalog,
) -> None:
    body = mixed_body(catalog, 60)
    preparer = Preparer(catalog, SCHEMAS, workers=0)
    preparer.start()

    outcomes = await preparer.prepare("dgme", ALLOWED, body, 500)

    assert preparer._pool is None
    assert outcomes == prepare_batch(preparer.types, "dgme", ALLOWED, body, 500)
    assert prepare_batch(preparer.types, "dgme", ALLOWED, b'{"events": {}}', 5) == (
        Refusal("not_events")
    )
