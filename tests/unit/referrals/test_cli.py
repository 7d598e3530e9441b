"""``puente referrals list / show``: filters, history, and nothing personal."""

from __future__ import annotations

import contextlib
import json
import sqlite3
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.contracts.catalog import Catalog
from services.referrals.deadlines import DeadlineChecker, Deadlines
from services.referrals.outbound import OverdueNotice, prepare_overdue
from services.referrals.settings import TRACKER_ID
from services.referrals.store import Store
from services.runtime.pubsub import Prepared
from services.runtime.settings import REPO_ROOT
from tests.unit.referrals.support import START, event, served

runner = CliRunner()


@pytest.fixture
def db(tmp_path: Path) -> Path:
    """Three referrals: one served, one unanswered (overdue), one to minsal refused."""
    path = tmp_path / "tracker.sqlite"
    store = Store.open(path)
    store.apply(served("r-served"))
    store.apply([event("CREATED", None, referral_id="r-late")])
    store.apply(
        [
            event("CREATED", None, referral_id="r-minsal", receiving="minsal"),
            event(
                "ACCEPTED",
                "SENT",
                referral_id="r-minsal",
                receiving="minsal",
                source="mtps",
                at=START + timedelta(hours=1),
            ),
        ]
    )
    deadlines = Deadlines.load(
        REPO_ROOT / "deploy" / "policy" / "referral_deadlines.toml"
    )
    DeadlineChecker(store, deadlines, lambda: START + timedelta(hours=25)).check()
    store.close()
    return path


def listed(db: Path, *options: str) -> list[str]:
    result = runner.invoke(
        app, ["referrals", "list", "--db", str(db), "--json", *options]
    )
    assert result.exit_code == 0, result.output
    return [json.loads(line)["referral_id"] for line in result.stdout.splitlines()]


def test_an_institution_lists_what_it_sent_and_what_it_received(db: Path) -> None:
    assert listed(db, "--institution", "dgme", "--role", "sent") == [
        "r-late",
        "r-minsal",
        "r-served",
    ]
    assert listed(db, "--institution", "minsal", "--role", "received") == ["r-minsal"]
    assert listed(db, "--institution", "minsal", "--role", "sent") == []
    assert listed(db, "--institution", "conapina") == ["r-late", "r-served"]


def test_the_list_filters_by_status_and_overdue(db: Path) -> None:
    assert listed(db, "--status", "done") == ["r-served"]
    assert listed(db, "--overdue") == ["r-late", "r-minsal"]


def test_a_role_needs_an_institution(db: Path) -> None:
    result = runner.invoke(app, ["referrals", "list", "--db", str(db), "--role", "sent"])
    assert result.exit_code == 2
    assert "--institution" in result.output


def test_show_gives_every_transition_with_time_and_institution(db: Path) -> None:
    result = runner.invoke(
        app, ["referrals", "show", "r-minsal", "--db", str(db), "--json"]
    )
    assert result.exit_code == 0, result.output
    shown = json.loads(result.stdout)
    assert [
        (h["institution"], h["lifecycle_event"], h["outcome"]) for h in shown["history"]
    ] == [
        ("dgme", "CREATED", "applied"),
        ("mtps", "ACCEPTED", "refused"),
    ]
    assert shown["history"][1]["reason"] == "referral_party_mismatch"
    assert shown["overdue"]["stage"] == "acknowledge"
    assert {(n["recipient"], n["role"]) for n in shown["notices"]} == {
        ("dgme", "referring"),
        ("conapina", "supervisor"),
    }


def test_show_in_a_table_uses_el_salvador_time(db: Path) -> None:
    result = runner.invoke(app, ["referrals", "show", "r-served", "--db", str(db)])
    assert result.exit_code == 0, result.output
    assert "2026-11-02 09:00" in result.stdout  # 15:00 UTC
    assert "COMPLETED" in result.stdout


def test_an_unknown_referral_is_a_clear_error(db: Path) -> None:
    result = runner.invoke(app, ["referrals", "show", "nope", "--db", str(db)])
    assert result.exit_code == 1
    assert "no referral nope is tracked" in result.stderr


def test_the_database_holds_no_personal_data(db: Path) -> None:
    with contextlib.closing(sqlite3.connect(db)) as raw:
        columns = {
            row[1]
            for table in ("referrals", "history", "notices")
            for row in raw.execute(f"PRAGMA table_info({table})")
        }
    personal = {"given_names", "family_names", "birth_date", "phone", "document_number"}
    assert not columns & personal
    assert not {c for c in columns if "subject" in c or "identity" in c}


def test_show_says_whether_the_hubs_notice_was_published(
    tmp_path: Path, catalog: Catalog
) -> None:
    path = tmp_path / "tracker.sqlite"
    referral_id = str(uuid.uuid4())
    store = Store.open(path)
    store.apply([event("CREATED", None, referral_id=referral_id)])
    deadlines = Deadlines.load(
        REPO_ROOT / "deploy" / "policy" / "referral_deadlines.toml"
    )

    def announce(notices: Sequence[OverdueNotice], now: datetime) -> list[Prepared]:
        return prepare_overdue(catalog, notices, TRACKER_ID, now)

    checker = DeadlineChecker(
        store, deadlines, lambda: START + timedelta(hours=25), announce
    )
    checker.check()
    [notice] = store.unsent()
    store.close()
    shown = runner.invoke(app, ["referrals", "show", referral_id, "--db", str(path)])
    assert shown.exit_code == 0, shown.output
    topic = "hub.in.hub_referrals.referral_overdue"
    text = " ".join(shown.stdout.split())  # the console wraps long lines
    assert f"{topic} event {notice.event_id}, waiting to be sent" in text
    store = Store.open(path)
    store.sent([notice.event_id], START + timedelta(hours=25))
    store.close()
    shown = runner.invoke(
        app, ["referrals", "show", referral_id, "--db", str(path), "--json"]
    )
    [published] = json.loads(shown.stdout)["published"]
    assert published["sent_at"] == "2026-11-03T16:00:00+00:00"
