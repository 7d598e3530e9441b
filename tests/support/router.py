"""A router service running in the test process, on a broker of the test session."""

from __future__ import annotations

import contextlib
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

from prometheus_client import CollectorRegistry

from services.router.app import RouterService, build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings


@contextlib.asynccontextmanager
async def running_router(
    kafka: KafkaSettings, state_dir: Path, registry: CollectorRegistry | None = None
) -> AsyncIterator[RouterService]:
    """A started router with a group, port and state dir of its own; stopped after."""
    settings = RouterSettings(
        group_id=f"router-{uuid.uuid4().hex[:8]}",
        port=free_port(),
        hub=HubSettings(state_dir=state_dir),
        kafka=kafka,
    )
    service = build_service(settings, registry or CollectorRegistry())
    await service.start()
    try:
        yield service
    finally:
        await service.stop()
