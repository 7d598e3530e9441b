"""Run the gateway with fixed publish grants: for benchmarks and fault tests only.

``python -m services.gateway.testserver dgme=return_arrival,referral minsal=referral``
runs the real service (same settings, outbox, relay) but takes its rights from the
command line instead of the access policy.
"""

from __future__ import annotations

import sys

from services.gateway.__main__ import main
from services.gateway.rights import StaticRights


def grants(args: list[str]) -> dict[str, list[str]]:
    """Parse ``institution=type,type`` arguments."""
    out: dict[str, list[str]] = {}
    for arg in args:
        institution, _, types = arg.partition("=")
        out[institution] = [t for t in types.split(",") if t]
    return out


if __name__ == "__main__":
    sys.exit(main(StaticRights(grants(sys.argv[1:]))))
