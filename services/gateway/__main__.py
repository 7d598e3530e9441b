"""``python -m services.gateway``: run the gateway alone until SIGINT or SIGTERM."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
import sys

from prometheus_client import CollectorRegistry

from services.contracts.errors import PuenteError
from services.gateway.app import GatewayService
from services.gateway.rights import PublishRights
from services.gateway.settings import GatewaySettings


async def serve(settings: GatewaySettings, rights: PublishRights | None = None) -> None:
    """Run the gateway service until the process is asked to stop."""
    service = GatewayService(settings, CollectorRegistry(), rights)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        with contextlib.suppress(NotImplementedError):
            loop.add_signal_handler(sig, stop.set)
    await service.start()
    try:
        await stop.wait()
    finally:
        await service.stop()


def main(rights: PublishRights | None = None) -> int:
    """Entry point; exit code 1 with a one-line reason on a configuration error."""
    settings = GatewaySettings()
    logging.basicConfig(
        level=settings.hub.log_level, format="%(levelname)s %(name)s %(message)s"
    )
    try:
        import uvloop  # noqa: PLC0415 - optional speed-up

        runner = asyncio.Runner(loop_factory=uvloop.new_event_loop)
    except ImportError:
        runner = asyncio.Runner()
    try:
        with runner:
            runner.run(serve(settings, rights))
    except PuenteError as e:
        print(f"gateway: {e}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
