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
from typing import Any

from prometheus_client import CollectorRegistry

from services.contracts.errors import PuenteError
from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port


class WorkersError(PuenteError):
    """The benchmark's router processes died or did not get their work done."""


@dataclass
class _Shared:
    assigned: Synchronized[int]
    records: Synchronized[int]
    outputs: Synchronized[int]
    first: Synchronized[float]
    last: Synchronized[float]


def _worker(settings: RouterSettings, shared: _Shared, stop: Event) -> None:
    asyncio.run(_serve(settings, shared, stop))


async def _serve(settings: RouterSettings, shared: _Shared, stop: Event) -> None:
    service = build_service(settings, CollectorRegistry())
    await service.start()
    try:
        while not stop.is_set():
            stats = service.router.stats
            shared.assigned.value = service.assigned()
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


class Workers:
    """``count`` router processes sharing one consumer group."""

    def __init__(self, settings: RouterSettings, count: int) -> None:
        context = mp.get_context("spawn")
        self._stop = context.Event()
        self._shared = [
            _Shared(context.Value("q", 0), context.Value("q", 0), context.Value("q", 0),
                    context.Value("d", 0.0), context.Value("d", 0.0))
            for _ in range(count)
        ]  # fmt: skip
        self._processes = [
            context.Process(
                target=_worker,
                args=(_with_port(settings), shared, self._stop),
                daemon=True,
            )
            for shared in self._shared
        ]

    def start(self) -> None:
        """Spawn the processes."""
        for process in self._processes:
            process.start()

    async def ready(self, limit: float) -> None:
        """Wait until every process holds partitions (the group is stable)."""
        await self._until(lambda: all(s.assigned.value > 0 for s in self._shared), limit)
        await asyncio.sleep(1.0)  # a last rebalance may still be settling

    async def routed(self, records: int, limit: float) -> Run:
        """Wait until the processes together routed ``records``."""
        await self._until(
            lambda: sum(s.records.value for s in self._shared) >= records, limit
        )
        await asyncio.sleep(0.1)  # let the last figures land
        first = min(s.first.value for s in self._shared if s.first.value)
        last = max(s.last.value for s in self._shared)
        outputs = sum(s.outputs.value for s in self._shared)
        return Run(sum(s.records.value for s in self._shared), outputs, last - first)

    def stop(self) -> None:
        """Stop every process (kill what does not stop in time)."""
        self._stop.set()
        for process in self._processes:
            process.join(timeout=20)
            if process.is_alive():
                process.kill()

    async def _until(self, done: Any, limit: float) -> None:
        deadline = time.monotonic() + limit
        while not done():
            dead = [p.exitcode for p in self._processes if not p.is_alive()]
            if dead:
                raise WorkersError(f"a router process exited with code {dead[0]}")
            if time.monotonic() > deadline:
                held = [s.assigned.value for s in self._shared]
                raise WorkersError(
                    f"router processes not done within {limit:.0f} s "
                    f"(partitions held: {held})"
                )
            await asyncio.sleep(0.05)


def _with_port(settings: RouterSettings) -> RouterSettings:
    # Handed over pickled, not as JSON: JSON masks the SASL password.
    return settings.model_copy(update={"port": free_port()})
