"""``python -m services.router``: run the router alone against a running cluster."""

from __future__ import annotations

import asyncio

from prometheus_client import CollectorRegistry

from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.service import configure_logging, serve, stop_on_signals


async def main() -> None:
    """Run until SIGINT/SIGTERM."""
    settings = RouterSettings()
    configure_logging(settings.hub.log_level)
    stop = asyncio.Event()
    stop_on_signals(stop)
    await serve([build_service(settings, CollectorRegistry())], stop)


if __name__ == "__main__":
    asyncio.run(main())
