"""``python -m services.router``: run the router alone against a running cluster."""

from __future__ import annotations

import sys

from prometheus_client import CollectorRegistry

from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.service import run_alone, serve


def run() -> int:
    """Entry point; exit code 1 with a one-line reason when it cannot run."""
    settings = RouterSettings()
    return run_alone(
        "router",
        settings,
        # Built inside the run: a missing production key is one line, not a traceback.
        lambda stop: serve([build_service(settings, CollectorRegistry())], stop),
    )


if __name__ == "__main__":
    sys.exit(run())
