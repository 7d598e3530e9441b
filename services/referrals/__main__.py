"""``python -m services.referrals``: run the referral tracker alone against Kafka."""

from __future__ import annotations

import asyncio
import sys

from prometheus_client import CollectorRegistry

from services.contracts.errors import PuenteError
from services.referrals.app import build_service
from services.referrals.settings import ReferralsSettings
from services.runtime.service import configure_logging, stop_on_signals


async def main(settings: ReferralsSettings) -> None:
    """Run until SIGINT/SIGTERM."""
    stop = asyncio.Event()
    stop_on_signals(stop)
    await build_service(settings, CollectorRegistry()).run_until(stop)


def run() -> int:
    """Entry point; exit code 1 with a one-line reason when it cannot run."""
    settings = ReferralsSettings()
    configure_logging(settings.hub.log_level)
    if not settings.kafka.bootstrap_servers:
        print(  # noqa: T201 - the operator's only feedback
            "referrals: PUENTE_KAFKA_BOOTSTRAP_SERVERS is not set; point it at Kafka, "
            "or use `puente up` to run every service on an embedded broker",
            file=sys.stderr,
        )
        return 1
    try:
        asyncio.run(main(settings))
    except PuenteError as e:
        print(f"referrals: {e}", file=sys.stderr)  # noqa: T201
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(run())
