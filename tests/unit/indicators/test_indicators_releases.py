"""Releases and corrections: published tables are frozen, corrections replace events."""

from __future__ import annotations

import json
import sqlite3
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from services.cli import app as root
from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue, load_catalogue
from services.indicators.counting import closed_through, closes_on
from services.indicators.errors import StoreError
from services.indicators.store import Store
from services.indicators.tables import as_json, publish
from services.policy import Policy
from tests.unit.indicators.conftest import POLICY_DIR
from tests.unit.indicators.test_indicators_counting import NOON, arrival

NOVEMBER = (date(2026, 11, 1), date(2026, 11, 30))
AT = datetime(2026, 12, 4, 9, tzinfo=UTC)


@pytest.fixture(scope="module")
def catalogue(catalog: Catalog, policy: Policy) -> Catalogue:
    return load_catalogue(POLICY_DIR, catalog, policy)


@pytest.fixture
def store(tmp_path: Path) -> Store:
    return Store.open(tmp_path / "counts.sqlite")


def women(store: Store, catalogue: Catalogue, *, live: bool = False) -> Any:
    """November's published count of women returned (None: not published)."""
    publication = publish(
        catalogue.get("returns"),
        store.counts("returns", 3, live=live),
        *NOVEMBER,
        ["sex"],
    )
    tables = as_json(publication)["tables"]
    if not tables:
        return None
    cells = {c["sex"]: c["count"] for c in tables[0]["cells"]}
    return cells.get("FEMALE", 0)


def correction(event_id: str, of: str, **changes: Any) -> dict[str, Any]:
    event = arrival(event_id, **changes)
    event["envelope"]["supersedes_event_id"] = of
    return event


def test_a_period_is_released_whole_days_after_it_ends() -> None:
    # November closes on 1 December; three days later it may be released.
    assert closes_on(date(2026, 11, 30), 3) == date(2026, 12, 4)
    assert closed_through("month", date(2026, 12, 4), 3) == date(2026, 11, 30)
    assert closed_through("month", date(2026, 12, 3), 3) == date(2026, 10, 31)
    assert closed_through("day", date(2026, 12, 4), 1) == date(2026, 12, 2)
    # ISO week 48 of 2026 ends on Sunday 29 November.
    assert closed_through("week", date(2026, 12, 2), 2) == date(2026, 11, 29)
    assert closed_through("week", date(2026, 12, 1), 2) == date(2026, 11, 22)


def test_a_period_not_released_is_pending_and_never_published(
    catalogue: Catalogue, store: Store
) -> None:
    store.apply(catalogue, [("return_arrival", arrival(f"p{i}")) for i in range(8)])
    publication = publish(
        catalogue.get("returns"), store.counts("returns", 3), *NOVEMBER, ["sex"]
    )
    body = as_json(publication)
    assert body["tables"] == []
    assert body["released_through"] is None
    assert body["pending"] == [
        {
            "period": "2026-11",
            "from": "2026-11-01",
            "to": "2026-11-30",
            "release_on": "2026-12-04",
        }
    ]
    # Operators may look at it, marked provisional.
    provisional = publish(
        catalogue.get("returns"), store.counts("returns", 3, live=True), *NOVEMBER
    )
    assert [t.provisional for t in provisional.tables] == [True]
    assert provisional.tables[0].cells[0].count == 8


def test_a_released_table_does_not_move_when_late_events_arrive(
    catalogue: Catalogue, store: Store
) -> None:
    store.apply(catalogue, [("return_arrival", arrival(f"r{i}")) for i in range(7)])
    assert store.release({"returns": NOVEMBER[1]}, AT) == ["returns"]
    assert women(store, catalogue) == 7
    # One more woman returned in November, recorded after the release: a reader
    # comparing two tables would learn her department, sex and age. The table
    # stays as released; the live counts and the late count take her in.
    late = arrival("late", at=NOON + timedelta(days=5))
    result = store.apply(catalogue, [("return_arrival", late)])
    assert result.late >= 1
    assert women(store, catalogue) == 7
    assert women(store, catalogue, live=True) == 7  # released periods come from the copy
    assert sum(store.day_counts("returns").values()) == 8
    assert store.late_events()["returns"] == 1
    # A second release for the same day changes nothing.
    assert store.release({"returns": NOVEMBER[1]}, AT + timedelta(days=1)) == []
    assert women(store, catalogue) == 7


def test_a_correction_replaces_the_event_it_supersedes(
    catalogue: Catalogue, store: Store
) -> None:
    events = [("return_arrival", arrival(f"c{i}", sex="FEMALE")) for i in range(6)]
    store.apply(catalogue, events)
    fixed = correction("c6", of="c0", sex="MALE")
    result = store.apply(catalogue, [("return_arrival", fixed)])
    assert result.corrections == 1
    cells = store.day_counts("returns")
    by_sex = {cell[0]: n for (_, cell), n in cells.items()}
    assert by_sex == {"FEMALE": 5, "MALE": 1}
    # Read again, it changes nothing.
    assert store.apply(catalogue, [("return_arrival", fixed)]).duplicates == 1
    assert store.day_counts("returns") == cells


def test_a_correction_that_arrives_first_gives_the_same_counts(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    original = arrival("o1", sex="FEMALE", department="SV-AH")
    first = correction("o2", of="o1", sex="MALE", department="SV-AH")
    second = correction("o3", of="o2", sex="MALE", department="SV-SS")
    orders = [
        [original, first, second],
        [second, first, original],
        [first, second, original],
    ]
    seen = []
    for n, order in enumerate(orders):
        store = Store.open(tmp_path / f"order{n}.sqlite")
        for event in order:
            store.apply(catalogue, [("return_arrival", event)])
        seen.append(store.day_counts("returns"))
        store.close()
    assert seen[0] == seen[1] == seen[2]
    assert sum(seen[0].values()) == 1
    ((_, cell),) = seen[0].keys()
    assert cell[0] == "MALE"
    assert "SV-SS" in cell


def test_a_correction_of_a_released_day_is_late_and_leaves_the_table(
    catalogue: Catalogue, store: Store
) -> None:
    store.apply(catalogue, [("return_arrival", arrival(f"k{i}")) for i in range(6)])
    store.release({"returns": NOVEMBER[1]}, AT)
    fixed = correction("k6", of="k0", sex="MALE")
    result = store.apply(catalogue, [("return_arrival", fixed)])
    assert result.late == 2  # one cell loses her, another gains him
    assert women(store, catalogue) == 6
    assert store.late_events()["returns"] == 2


def test_a_rebuilt_database_keeps_what_was_released(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    live = Store.open(tmp_path / "live.sqlite")
    events = [("return_arrival", arrival(f"b{i}")) for i in range(7)]
    live.apply(catalogue, events[:6])
    live.release({"returns": NOVEMBER[1]}, AT)
    live.apply(catalogue, events[6:])  # late
    rebuilt = Store.open(tmp_path / "rebuilt.sqlite")
    rebuilt.apply(catalogue, events)
    assert rebuilt.released_counts("returns") != live.released_counts("returns")
    rebuilt.adopt_releases(live)
    assert rebuilt.released_counts("returns") == live.released_counts("returns")
    assert rebuilt.released_through() == live.released_through()
    assert rebuilt.late_events() == live.late_events()
    assert rebuilt.day_counts("returns") == live.day_counts("returns")
    live.close()
    rebuilt.close()


def test_the_releases_command_shows_each_indicators_release_and_late_changes(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    db = tmp_path / "counts.sqlite"
    store = Store.open(db)
    store.apply(catalogue, [("return_arrival", arrival(f"x{i}")) for i in range(5)])
    store.release({"returns": NOVEMBER[1]}, AT)
    store.apply(catalogue, [("return_arrival", arrival("x5"))])
    store.close()
    shown = CliRunner().invoke(
        root, ["indicators", "releases", "--db", str(db), "--json"]
    )
    assert shown.exit_code == 0, shown.output
    rows = {r["id"]: r for r in json.loads(shown.stdout)}
    assert rows["returns"]["released_through"] == "2026-11-30"
    assert rows["returns"]["late"] == 1
    assert rows["h2_returns"] == {
        "id": "h2_returns", "period": "month", "released_through": None, "late": 0
    }  # fmt: skip
    exported = CliRunner().invoke(
        root, ["indicators", "export", "returns", "--db", str(db), "--provisional",
               "--from", "2026-11-01", "--to", "2026-12-31"],
    )  # fmt: skip
    assert exported.exit_code == 0, exported.output
    tables = json.loads(exported.stdout)["tables"]
    assert [(t["period"], t["provisional"]) for t in tables] == [
        ("2026-11", False),
        ("2026-12", True),
    ]


def test_a_database_from_before_releases_is_named_as_such_read_only(
    tmp_path: Path,
) -> None:
    db = tmp_path / "old.sqlite"
    old = sqlite3.connect(db)
    old.executescript(
        "CREATE TABLE events (event_id TEXT PRIMARY KEY);"
        "CREATE TABLE counts (indicator TEXT, day TEXT, cell TEXT, n INTEGER);"
    )
    old.close()
    store = Store.open(db, readonly=True)
    try:
        with pytest.raises(StoreError, match="predates this version"):
            store.released_through()
    finally:
        store.close()
    # Opened by the service (writable), it is upgraded in place.
    upgraded = Store.open(db)
    assert upgraded.released_through() == {}
    upgraded.close()
