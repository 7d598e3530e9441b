"""``python -m services.indicators``: run the indicators service alone against Kafka."""

from __future__ import annotations

import sys

from prometheus_client import CollectorRegistry

from services.indicators.app import build_service
from services.indicators.settings import IndicatorsSettings
from services.runtime.service import run_alone


def run() -> int:
    """Entry point; exit code 1 with a one-line reason when it cannot run."""
    settings = IndicatorsSettings()
    return run_alone(
        "indicators",
        settings,
        lambda stop: build_service(settings, CollectorRegistry()).run_until(stop),
    )


if __name__ == "__main__":
    sys.exit(run())
