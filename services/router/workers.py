"""Run several router processes in one consumer group (for the benchmark).

Partitions spread over the processes, so on a multi-core machine they route in
parallel; in production the same is done by running more router replicas.
"""

from __future__ import annotations

import asyncio
import multiprocessing as mp
import time
from dataclasses import dataclass
from multiprocessing.sharedctypes import Synchronized
from multiprocessing.synchronize import Event

from prometheus_client import CollectorRegistry

from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port


@dataclass
class _Shared:
    records: Synchronized[int]
    outputs: Synchronized[int]
    first: Synchronized[float]
    last: Synchronized[float]


def _worker(settings_json: str, shared: _Shared, stop: Event) -> None:
    settings = RouterSettings.model_validate_json(settings_json)
    asyncio.run(_serve(settings, shared, stop))


async def _serve(settings: RouterSettings, shared: _Shared, stop: Event) -> None:
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        while not stop.is_set():
            stats = service.router.stats
            shared.records.value = stats.records
            shared.outputs.value = stats.outputs
            shared.first.value = stats.first_started or 0.0
            shared.last.value = stats.last_finished or 0.0
            await asyncio.sleep(0.02)
    finally:
        await service.stop()


@dataclass(frozen=True, slots=True)
class Run:
    """What a multi-process run routed and how fast."""

    records: int
    outputs: int
    seconds: float


def route_with(settings: RouterSettings, workers: int, events: int, limit: float) -> Run:
    """Start ``workers`` router processes and wait until they routed ``events``."""
    context = mp.get_context("spawn")
    stop = context.Event()
    shared = [
        _Shared(context.Value("q", 0), context.Value("q", 0), context.Value("d", 0.0),
                context.Value("d", 0.0))
        for _ in range(workers)
    ]  # fmt: skip
    processes = [
        context.Process(
            target=_worker,
            args=(
                settings.model_copy(update={"port": free_port()}).model_dump_json(),
                s,
                stop,
            ),
            daemon=True,
        )
        for s in shared
    ]
    for process in processes:
        process.start()
    deadline = time.monotonic() + limit
    try:
        while sum(s.records.value for s in shared) < events:
            if time.monotonic() > deadline or not all(p.is_alive() for p in processes):
                raise TimeoutError("router workers did not finish in time")
            time.sleep(0.05)
        time.sleep(0.1)  # let the last figures land
        first = min(s.first.value for s in shared if s.first.value)
        last = max(s.last.value for s in shared)
        return Run(
            sum(s.records.value for s in shared), sum(s.outputs.value for s in shared),
            last - first,
        )  # fmt: skip
    finally:
        stop.set()
        for process in processes:
            process.join(timeout=20)
            if process.is_alive():
                process.kill()
