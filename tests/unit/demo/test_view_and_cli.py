"""The demo's screens, its per-run state, and how the command ends."""

from __future__ import annotations

import io
import os
from pathlib import Path

import pytest
import typer
from rich.console import Console, RenderableType
from typer.testing import CliRunner

from services.demo import app as demo_app
from services.demo import view
from services.demo.cli import demo
from services.demo.driver import DemoError
from services.demo.tally import Published, Snapshot, check


def board() -> view.Board:
    published = Published()
    for _ in range(40):
        published.count("dgme", "return_arrival", None)
    published.count("minsal", "border_crossing", "not_allowed_to_publish")
    snap = Snapshot(
        accepted={("dgme", "return_arrival"): 40.0},
        rejected={("minsal", "border_crossing", "not_allowed_to_publish"): 1.0},
        deliveries={
            ("conapina", "return_arrival", "FULL"): 12.0,
            ("rree_vmdmh", "return_arrival", "PSEUDO"): 40.0,
        },
        latency_buckets={0.025: 10.0, 0.05: 50.0, 0.1: 52.0, float("inf"): 52.0},
    )
    return view.Board(40, 3, 15, published, snap, "publishing", 7.4, 93)


def text(renderable: RenderableType | str) -> str:
    console = Console(file=io.StringIO(), width=120, record=True)
    console.print(renderable, soft_wrap=True)
    return console.export_text()


def test_the_live_view_shows_sources_recipients_views_reasons_and_latency() -> None:
    shown = text(view.live(board()))
    for expected in (
        "seed 3",
        "publishing",
        "7/15 s",
        "Events in, per source",
        "minsal",
        "Deliveries, per recipient and view",
        "rree_vmdmh",
        "PSEUDO",
        "not_allowed_to_publish",
        "latency p50",
        "audit ledger 93",
    ):
        assert expected in shown


def test_the_progress_line_is_one_line_with_the_totals() -> None:
    line = view.progress_line(board())
    assert "\n" not in line
    assert "published=41 accepted=40 rejected=1 deliveries=52" in line
    assert "p50=" in line
    assert "ms" in line


def test_the_summary_says_what_was_sent_delivered_and_rejected() -> None:
    shown = board()
    lines = view.summary_lines(shown, Path("ledger.sqlite"))
    assert lines[0].startswith("published 41 inputs (40 good, 1 bad)")
    assert "deliveries 52" in lines[1]
    assert "rejections by reason: not_allowed_to_publish=1" in lines
    assert "audit ledger: 93 entries in ledger.sqlite" in lines
    tables = "".join(text(t) for t in view.summary_tables(shown))
    assert "returns" in tables
    assert "conapina" in tables
    verdict = text(view.verdict_text(check(shown.published, shown.snapshot)))
    assert "every bad input was rejected with its expected reason (1 of 1)" in verdict


def test_a_failed_verdict_lists_its_problems() -> None:
    shown = board()
    shown.published.count("dgme", "referral", "invalid")
    verdict = text(view.verdict_text(check(shown.published, shown.snapshot)))
    assert "NOT AS EXPECTED" in verdict
    assert "invalid: 1 bad input(s) sent, 0 rejected" in verdict


def test_the_demo_state_starts_empty_and_leaves_the_environment_as_it_was(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in demo_app.STATE_ENV:
        monkeypatch.delenv(name, raising=False)
    old = tmp_path / "demo" / "router-dedupe.sqlite"
    old.parent.mkdir()
    old.write_text("last run")
    with demo_app.demo_state(tmp_path) as folder:
        assert not old.exists()
        assert os.environ["PUENTE_ROUTER_DEDUPE_PATH"] == str(old)
        assert os.environ["PUENTE_AUDIT_LEDGER_PATH"] == str(
            folder / "audit-ledger.sqlite"
        )
    assert "PUENTE_ROUTER_DEDUPE_PATH" not in os.environ


def test_paths_the_operator_set_are_kept(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    for name in demo_app.STATE_ENV:
        monkeypatch.setenv(name, str(tmp_path / f"{name}.sqlite"))
    kept = tmp_path / "demo" / "keep"
    kept.parent.mkdir()
    kept.write_text("mine")
    with demo_app.demo_state(tmp_path):
        assert os.environ["PUENTE_ROUTER_DEDUPE_PATH"].endswith("DEDUPE_PATH.sqlite")
    assert kept.exists()


def command() -> typer.Typer:
    cli = typer.Typer()
    cli.command()(demo)
    return cli


def test_a_service_that_fails_to_start_ends_the_command_with_a_message(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    def failing(options: demo_app.Options, console: Console) -> demo_app.Outcome:
        raise DemoError("a service failed to start: cannot listen on port 9101")

    monkeypatch.setattr(demo_app, "run", failing)
    result = CliRunner().invoke(command(), ["--duration", "5"])
    assert result.exit_code == 1
    assert "a service failed to start: cannot listen on port 9101" in result.stderr


@pytest.mark.parametrize(("bad_rejected", "code"), [(1.0, 0), (0.0, 1)])
def test_the_command_exits_0_only_when_the_hub_handled_every_input_as_expected(
    monkeypatch: pytest.MonkeyPatch, bad_rejected: float, code: int
) -> None:
    shown = board()
    shown.snapshot = Snapshot(
        accepted=shown.snapshot.accepted,
        rejected={("minsal", "border_crossing", "not_allowed_to_publish"): bad_rejected},
    )
    seen: list[demo_app.Options] = []

    def finished(options: demo_app.Options, console: Console) -> demo_app.Outcome:
        seen.append(options)
        return demo_app.Outcome(shown, check(shown.published, shown.snapshot), None)

    monkeypatch.setattr(demo_app, "run", finished)
    result = CliRunner().invoke(
        command(), ["--rate", "12.5", "--duration", "3", "--seed", "9"]
    )
    assert result.exit_code == code, result.output
    assert seen == [demo_app.Options(12.5, 3.0, 9)]
    assert "published 41 inputs" in result.stdout
