"""``puente run SERVICE`` and ``puente up``: run services in one process."""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

import typer
from rich.console import Console

from services import hub
from services.runtime import broker
from services.runtime.service import configure_logging, serve, stop_on_signals
from services.runtime.settings import HubSettings

out = Console(highlight=False)


def run(
    service: Annotated[str, typer.Argument(help=", ".join(s.name for s in hub.SPECS))],
) -> None:
    """Run one service against PUENTE_KAFKA_BOOTSTRAP_SERVERS until Ctrl-C."""
    spec = hub.spec_named(service)
    configure_logging(HubSettings().log_level)
    asyncio.run(_serve([spec], None))


def up() -> None:
    """Run every service; on an embedded broker if no Kafka is configured."""
    configure_logging(HubSettings().log_level)
    with broker.kafka_or_embedded() as (bootstrap, embedded):
        if embedded is None:
            asyncio.run(_serve(hub.available(), None))
            return
        with broker.ephemeral_state(HubSettings().state_dir, broker.EMBEDDED_STATE):
            asyncio.run(_serve(hub.available(), bootstrap))


async def _serve(specs: list[hub.ServiceSpec[Any]], embedded: str | None) -> None:
    # Built inside the loop: Kafka clients must be created in a running event loop.
    built = [spec.build() for spec in specs]
    stop = asyncio.Event()
    stop_on_signals(stop)

    def announce() -> None:
        out.print(hub.endpoints_table(built, embedded))
        out.print("Press Ctrl-C to stop.")

    await serve([b.service for b in built], stop, announce)
