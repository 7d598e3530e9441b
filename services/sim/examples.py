"""The sample events in ``examples/``: fixed seed and clock, so they never drift."""

from __future__ import annotations

import json
import random
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from services.sim import generate as gen
from services.sim.referrals import overdue_notice

EXAMPLE_NOW: Final = datetime(2026, 11, 2, 14, 5, tzinfo=UTC)
FLIGHT_SIZE: Final = 12


def _rng(name: str) -> random.Random:
    # Reproducible sample data, not secrets.
    return random.Random(f"puente-example:{name}")  # noqa: S311


def example_events() -> dict[str, Any]:
    """File name -> content: one valid event per type, and one small flight."""
    builders: dict[str, Callable[[random.Random], Any]] = {
        "return_arrival.json": lambda r: gen.child_return(r, EXAMPLE_NOW, mode="AIR"),
        "referral.json": lambda r: gen.referral_lifecycle(
            r, EXAMPLE_NOW, pathway="dgme->conapina:CHILD_PROTECTION", ending="pending"
        )[0],
        "border_crossing.json": lambda r: gen.border_crossing(r, EXAMPLE_NOW),
        "displacement_registration.json": lambda r: gen.displacement(
            r, EXAMPLE_NOW, "VIOLENCE_DL539"
        ),
        "return_flight.json": lambda r: gen.return_flight(
            r, EXAMPLE_NOW, passengers=FLIGHT_SIZE
        ),
    }
    events = {name: build(_rng(name)) for name, build in builders.items()}
    # The hub's notice when CONAPINA leaves that child's referral unanswered: to dgme
    # and to the PGR (the child's representative, CONAPINA being a party).
    events["referral_overdue.json"] = overdue_notice(
        _rng("referral_overdue.json"), events["referral.json"], EXAMPLE_NOW, "pgr"
    )
    return events


def write_examples(directory: Path) -> list[Path]:
    """Write the example files into ``directory`` (created if missing)."""
    directory.mkdir(parents=True, exist_ok=True)
    written = []
    for name, content in example_events().items():
        path = directory / name
        path.write_text(json.dumps(content, indent=2, ensure_ascii=False) + "\n", "utf-8")
        written.append(path)
    return written
