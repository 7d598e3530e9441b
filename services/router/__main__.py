"""``python -m services.router``: run the router alone against a running cluster."""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from services.contracts.errors import PuenteError
from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.service import configure_logging, serve, stop_on_signals


async def main(settings: RouterSettings) -> None:
    """Run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    await serve([build_service(settings, CollectorRegistry())], stop)


def run() -> int:
    """Entry point; exit code 1 with a one-line reason when it cannot run."""
    try:
        settings = RouterSettings()
        configure_logging(settings.hub.log_level)
        asyncio.run(main(settings))
    except PuenteError as e:
        print(f"router: {e}", file=sys.stderr)  # noqa: T201 - the operator's only feedback
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
