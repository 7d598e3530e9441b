"""``puente sim``: print simulated ministry events, write the example files."""

from __future__ import annotations

import base64
import enum
import json
import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Annotated, Any

import typer

from services.sim import generate as gen
from services.sim.examples import write_examples
from services.sim.traffic import Traffic

app = typer.Typer(
    name="sim",
    help="Simulated ministries: synthetic events for demos, benchmarks and tests.",
    no_args_is_help=True,
    add_completion=False,
)


class Kind(enum.StrEnum):
    """What `sample` prints."""

    TRAFFIC = "traffic"
    RETURN_FLIGHT = "return_flight"
    LAND_RETURN = "land_return"
    BORDER_CROSSING = "border_crossing"
    DISPLACEMENT_VIOLENCE = "displacement_violence"
    DISPLACEMENT_DISASTER = "displacement_disaster"
    REFERRAL = "referral"


def _episode(kind: Kind, rng: random.Random, now: datetime) -> list[dict[str, Any]]:
    if kind is Kind.RETURN_FLIGHT:
        return gen.return_flight(rng, now)
    if kind is Kind.LAND_RETURN:
        return gen.land_return(rng, now)
    if kind is Kind.BORDER_CROSSING:
        return [gen.border_crossing(rng, now)]
    if kind is Kind.DISPLACEMENT_VIOLENCE:
        return [gen.displacement(rng, now, "VIOLENCE_DL539")]
    if kind is Kind.DISPLACEMENT_DISASTER:
        return [gen.displacement(rng, now, "DISASTER_CIVIL_PROTECTION")]
    return gen.referral_lifecycle(rng, now)


@app.command()
def sample(
    kind: Annotated[Kind, typer.Argument(help="Which events to print.")] = Kind.TRAFFIC,
    count: Annotated[int, typer.Option(min=1, help="How many events.")] = 5,
    seed: Annotated[int, typer.Option(help="Same seed, same events.")] = 1,
) -> None:
    """Print simulated events as natural JSON, one per line (synthetic people only).

    ``traffic`` prints the mixed stream `puente demo` publishes, each line with the
    publisher, event type and, for bad inputs, the rejection reason expected.
    """
    now = datetime.now(UTC)
    if kind is Kind.TRAFFIC:
        for item in Traffic(seed, lambda: now).take(count):
            line: dict[str, Any] = {
                "source": item.source,
                "event_type": item.event_type,
                "expected_reason": item.expected_reason,
            }
            if item.body is not None:
                line["event"] = item.body
            else:
                line["raw_base64"] = base64.b64encode(item.raw or b"").decode("ascii")
            typer.echo(json.dumps(line, ensure_ascii=False))
        return
    # Reproducible sample data, not secrets.
    rng = random.Random(seed)  # noqa: S311
    printed = 0
    while printed < count:
        for event in _episode(kind, rng, now)[: count - printed]:
            typer.echo(json.dumps(event, ensure_ascii=False))
            printed += 1


@app.command()
def examples(
    out: Annotated[Path, typer.Option(help="Directory to write into.")] = Path(
        "examples"
    ),
) -> None:
    """Write one example natural-JSON file per event type, plus a 12-person flight."""
    for path in write_examples(out):
        typer.echo(str(path))
