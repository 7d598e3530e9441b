"""``python -m services.audit``: run the audit ledger alone against a running cluster."""

from __future__ import annotations

import sys

from prometheus_client import CollectorRegistry

from services.audit.app import build_service
from services.audit.settings import AuditSettings
from services.runtime.service import run_alone


def run() -> int:
    """Entry point; exit code 1 with a one-line reason when it cannot run."""
    settings = AuditSettings()
    return run_alone(
        "audit",
        settings,
        # Built inside the run: a missing production key is one line, not a traceback.
        lambda stop: build_service(settings, CollectorRegistry()).run_until(stop),
    )


if __name__ == "__main__":
    sys.exit(run())
