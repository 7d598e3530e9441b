"""Batch items turned into outbox entries, in worker processes when configured.

Validating and encoding one event costs ~80 us of CPU, so a batch of 500 would
hold the event loop for 40 ms and keep the gateway on one core. Large batches are
prepared in a small process pool instead (each worker parses the catalog once);
the event loop meanwhile serves other requests, the outbox and the relay.
Preparation is pure, so a worker gives exactly the results the gateway would.
"""

from __future__ import annotations

import asyncio
import logging
import multiprocessing as mp
import os
import threading
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, Literal

import orjson

from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import RecordInvalidError
from services.gateway import problems
from services.gateway.ingest import Limits, event_type_of, prepare
from services.gateway.outbox import Entry
from services.gateway.problems import ProblemError

log = logging.getLogger(__name__)

# Smaller bodies are prepared in place: the round trip to a worker costs more.
POOL_FROM_BYTES: Final = 16 * 1024

Outcome = Entry | dict[str, Any]  # the entry, or the item's problem document


def event_types(catalog: Catalog) -> dict[str, SchemaEntry]:
    """The latest schema of every event type, by name."""
    return {n: catalog.get(n) for n in catalog.names if catalog.get(n).is_event}


def entry_of(types: Mapping[str, SchemaEntry], event_type: str) -> SchemaEntry:
    """The latest schema of an event type; a 404 problem for anything else."""
    entry = types.get(event_type)
    if entry is None:
        raise problems.unknown_event_type(sorted(types))
    return entry


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why a whole batch body was refused (the gateway turns it into a problem)."""

    kind: Literal["malformed_json", "not_events", "too_many"]
    detail: str = ""
    count: int = 0


def parse_batch(body: bytes, batch_max: int) -> list[Any] | Refusal:
    """The events of a batch body ``{"events": [...]}``, or why it is refused."""
    try:
        parsed = orjson.loads(body)
    except orjson.JSONDecodeError as e:
        return Refusal("malformed_json", f"{e.msg} at byte {e.pos}")
    events = parsed.get("events") if isinstance(parsed, dict) else None
    if not isinstance(events, list) or parsed.keys() - {"events"}:
        return Refusal("not_events")
    if len(events) > batch_max:
        return Refusal("too_many", count=len(events))
    return events


def prepare_batch(
    types: Mapping[str, SchemaEntry],
    caller: str,
    allowed: frozenset[str],
    body: bytes,
    batch_max: int,
    *,
    limits: Limits | None = None,
) -> list[Outcome] | Refusal:
    """Parse a batch body and prepare each of its events (see `prepare_items`)."""
    events = parse_batch(body, batch_max)
    if isinstance(events, Refusal):
        return events
    return prepare_items(types, caller, allowed, events, limits)


def prepare_items(
    types: Mapping[str, SchemaEntry],
    caller: str,
    allowed: frozenset[str],
    events: Sequence[Any],
    limits: Limits | None = None,
) -> list[Outcome]:
    """One outcome per item: its entry, or a problem document naming its index.

    An item larger than ``limits`` gets its own 413 document; the others go on.
    """
    return [
        _prepare_item(types, caller, allowed, i, e, limits=limits)
        for i, e in enumerate(events)
    ]


def _prepare_item(
    types: Mapping[str, SchemaEntry],
    caller: str,
    allowed: frozenset[str],
    index: int,
    item: Any,
    *,
    limits: Limits | None,
) -> Outcome:
    path = f"events[{index}]"
    try:
        entry = _item_entry(types, caller, allowed, item)
        return prepare(entry, caller, item, limits)
    except RecordInvalidError as e:
        nested = RecordInvalidError(
            f"{path}.{e.path}" if e.path else path, e.expected, e.got
        )
        return {"index": index, **problems.invalid(nested).document()}
    except ProblemError as e:
        return {"index": index, **e.document()}


def _item_entry(
    types: Mapping[str, SchemaEntry], caller: str, allowed: frozenset[str], item: Any
) -> SchemaEntry:
    event_type = event_type_of(item)
    if event_type is None:
        raise RecordInvalidError("envelope.event_type", "an event type id")
    entry = entry_of(types, event_type)
    if event_type not in allowed:
        raise problems.not_allowed_to_publish(caller, event_type)
    return entry


class Preparer:
    """Prepares batch items in place, or in ``workers`` processes."""

    def __init__(
        self,
        catalog: Catalog,
        schemas_dir: Path,
        workers: int,
        limits: Limits | None = None,
    ) -> None:
        self.types = event_types(catalog)
        self._schemas_dir = schemas_dir
        self._workers = workers
        self.limits = limits
        self._pool: ProcessPoolExecutor | None = None

    def start(self) -> None:
        """Start the worker processes (none when ``workers`` is 0)."""
        if self._workers > 0 and self._pool is None:
            self._pool = ProcessPoolExecutor(
                self._workers,
                # spawn: the gateway runs threads (outbox, dedupe), which fork breaks.
                mp_context=mp.get_context("spawn"),
                initializer=_load,
                initargs=(str(self._schemas_dir),),
            )
            # Spawn the workers now, not on the first batch that needs them.
            for _ in range(self._workers):
                self._pool.submit(_load, str(self._schemas_dir))

    def stop(self, *, wait: bool = True) -> None:
        """Stop the worker processes."""
        pool, self._pool = self._pool, None
        if pool is not None:
            pool.shutdown(wait=wait, cancel_futures=True)

    async def prepare(
        self, caller: str, allowed: frozenset[str], body: bytes, batch_max: int
    ) -> list[Outcome] | Refusal:
        """The outcome of every event of a batch body, in order; or its refusal.

        Parsing happens in the worker too: the body travels as bytes, which is
        cheaper than parsed JSON.
        """
        pool = self._pool
        limits = self.limits
        if pool is None or len(body) < POOL_FROM_BYTES:
            return prepare_batch(
                self.types, caller, allowed, body, batch_max, limits=limits
            )
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(
                pool, _prepare_in_worker, caller, allowed, body, batch_max, limits
            )
        except BrokenProcessPool:
            # A worker died (killed, out of memory): serve this batch in place and
            # start a fresh pool for the next one.
            log.warning("batch preparation worker died; restarting the pool")
            self.stop(wait=False)
            self.start()
            return prepare_batch(
                self.types, caller, allowed, body, batch_max, limits=limits
            )


_TYPES: dict[str, SchemaEntry] = {}
# How often a worker checks that the gateway that started it still runs.
_ORPHAN_CHECK_S: Final = 1.0


def _load(schemas_dir: str) -> None:
    if not _TYPES:
        _TYPES.update(event_types(Catalog.load(Path(schemas_dir))))
        threading.Thread(
            target=_exit_when_orphaned, args=(os.getppid(),), daemon=True
        ).start()


def _exit_when_orphaned(parent: int) -> None:
    # A gateway killed with SIGKILL cannot stop its pool: its workers would idle
    # forever. When the parent is gone the worker is re-parented; then it leaves.
    while os.getppid() == parent:
        time.sleep(_ORPHAN_CHECK_S)
    os._exit(0)


def _prepare_in_worker(
    caller: str,
    allowed: frozenset[str],
    body: bytes,
    batch_max: int,
    limits: Limits | None,
) -> list[Outcome] | Refusal:
    return prepare_batch(_TYPES, caller, allowed, body, batch_max, limits=limits)
