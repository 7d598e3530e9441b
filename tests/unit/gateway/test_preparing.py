"""Batch preparation in a worker process gives exactly what the gateway computes."""

from __future__ import annotations

import copy
from typing import Any

from services.contracts.catalog import Catalog
from services.gateway.outbox import Entry
from services.gateway.preparing import POOL_FROM_ITEMS, Preparer, prepare_items
from services.gateway.samples import minimal_event
from services.runtime.settings import REPO_ROOT

ALLOWED = frozenset({"return_arrival", "referral"})


def mixed_batch(catalog: Catalog, size: int) -> list[Any]:
    events: list[Any] = [
        minimal_event(catalog.get("return_arrival"), "dgme") for _ in range(size)
    ]
    bad = copy.deepcopy(events[3])
    bad["payload"]["person_profile"]["sex"] = "F"
    events[3] = bad
    events[5] = minimal_event(catalog.get("border_crossing"), "dgme")  # no right
    events[7] = {"envelope": {"event_type": "nope"}}
    events[9] = minimal_event(catalog.get("return_arrival"), "minsal")  # not the caller
    return events


async def test_a_large_batch_prepared_in_a_worker_equals_preparing_it_in_place(
    catalog: Catalog,
) -> None:
    events = mixed_batch(catalog, POOL_FROM_ITEMS + 8)
    preparer = Preparer(catalog, REPO_ROOT / "schemas", workers=1)
    preparer.start()
    try:
        in_worker = await preparer.prepare("dgme", ALLOWED, events)
    finally:
        preparer.stop()
    in_place = prepare_items(preparer.types, "dgme", ALLOWED, events)

    assert in_worker == in_place
    statuses = [o if isinstance(o, Entry) else o["status"] for o in in_worker[3:10:2]]
    assert statuses == [422, 403, 404, 403]
    assert sum(isinstance(o, Entry) for o in in_worker) == len(events) - 4


async def test_without_workers_every_batch_is_prepared_in_place(
    catalog: Catalog,
) -> None:
    events = mixed_batch(catalog, POOL_FROM_ITEMS + 1)
    preparer = Preparer(catalog, REPO_ROOT / "schemas", workers=0)
    preparer.start()

    outcomes = await preparer.prepare("dgme", ALLOWED, events)

    assert outcomes == prepare_items(preparer.types, "dgme", ALLOWED, events)
