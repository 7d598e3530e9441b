"""The committed example files and the ``puente sim`` commands."""

from __future__ import annotations

import json
from pathlib import Path

from typer.testing import CliRunner

from services.runtime.settings import REPO_ROOT
from services.sim.cli import app
from services.sim.examples import FLIGHT_SIZE, example_events, write_examples
from tests.unit.sim.conftest import Wire

EXAMPLES = REPO_ROOT / "examples"


def test_the_committed_examples_are_what_the_generator_writes() -> None:
    for name, content in example_events().items():
        assert json.loads((EXAMPLES / name).read_text("utf-8")) == content, name


def test_every_example_is_a_valid_event(wire: Wire) -> None:
    for name in (
        "return_arrival",
        "referral",
        "border_crossing",
        "displacement_registration",
        "referral_overdue",
    ):
        event = json.loads((EXAMPLES / f"{name}.json").read_text("utf-8"))
        assert event["envelope"]["event_type"] == name
        wire(event)
    flight = json.loads((EXAMPLES / "return_flight.json").read_text("utf-8"))
    assert len(flight) == FLIGHT_SIZE
    assert len({e["envelope"]["correlation_id"] for e in flight}) == 1
    for event in flight:
        wire(event)


def test_the_examples_show_what_they_are_named_for() -> None:
    events = example_events()
    child = events["return_arrival.json"]
    assert child["envelope"]["source_institution_id"] == "dgme"
    assert child["payload"]["accompaniment"] == "CHILD_UNACCOMPANIED"
    assert child["payload"]["arrival_mode"] == "AIR"
    referral = events["referral.json"]
    assert referral["envelope"]["source_institution_id"] == "dgme"
    assert referral["payload"]["receiving_institution_id"] == "conapina"
    assert referral["payload"]["lifecycle_event"] == "CREATED"
    notice = events["referral_overdue.json"]
    assert notice["envelope"]["source_institution_id"] == "hub_referrals"
    assert notice["payload"]["referral_id"] == referral["payload"]["referral_id"]
    assert notice["payload"]["supervising_institution_id"] == "pgr"
    displacement = events["displacement_registration.json"]
    assert displacement["payload"]["regime"] == "VIOLENCE_DL539"


def test_write_examples_writes_one_file_per_example(tmp_path: Path) -> None:
    written = write_examples(tmp_path / "out")
    assert sorted(p.name for p in written) == sorted(example_events())
    assert all(p.stat().st_size > 100 for p in written)


def test_sim_sample_prints_one_json_event_per_line() -> None:
    result = CliRunner().invoke(app, ["sample", "border_crossing", "--count", "3"])
    assert result.exit_code == 0, result.output
    lines = result.output.splitlines()
    assert len(lines) == 3
    assert all(
        json.loads(line)["envelope"]["event_type"] == "border_crossing" for line in lines
    )


def test_sim_sample_traffic_labels_each_input() -> None:
    result = CliRunner().invoke(app, ["sample", "--count", "4", "--seed", "2"])
    assert result.exit_code == 0, result.output
    for line in result.output.splitlines():
        item = json.loads(line)
        assert {"source", "event_type", "expected_reason"} <= item.keys()
        assert ("event" in item) != ("raw_base64" in item)


def test_sim_examples_writes_into_the_given_directory(tmp_path: Path) -> None:
    result = CliRunner().invoke(app, ["examples", "--out", str(tmp_path)])
    assert result.exit_code == 0, result.output
    assert (tmp_path / "return_flight.json").is_file()
