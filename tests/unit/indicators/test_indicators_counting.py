"""Counting, the store, published tables and their two formats, on the real catalogue."""

from __future__ import annotations

import csv
import io
import json
import random
import uuid
from datetime import UTC, date, datetime, timedelta
from pathlib import Path
from typing import Any

import hxl  # type: ignore[import-untyped]
import pytest
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue, load_catalogue
from services.indicators.counting import (
    Tally,
    ack_band,
    occurred_day,
    period_bounds,
    period_label,
    periods_between,
)
from services.indicators.disclosure import (
    PRIMARY,
    determined_cells,
    equations,
    lattice,
    protect,
)
from services.indicators.errors import QueryError
from services.indicators.metrics import IndicatorCollector
from services.indicators.store import Store
from services.indicators.tables import Counts, DayCounts, as_hxl_csv, as_json, publish
from services.policy import Policy
from tests.unit.indicators.conftest import POLICY_DIR

NOON = datetime(2026, 11, 10, 18, tzinfo=UTC)  # 12:00 in San Salvador


@pytest.fixture(scope="module")
def catalogue(catalog: Catalog, policy: Policy) -> Catalogue:
    return load_catalogue(POLICY_DIR, catalog, policy)


def arrival(
    event_id: str,
    *,
    sex: str = "FEMALE",
    age: str = "AGE_30_59",
    department: str = "SV-SS",
    at: datetime = NOON,
    minor: bool = False,
    accompaniment: str = "ADULT_ALONE",
) -> dict[str, Any]:
    """A return arrival as the policy delivers it to hub_indicators (plain decode)."""
    return {
        "envelope": {"event_id": event_id, "occurred_at": int(at.timestamp() * 1000)},
        "payload": {
            "person_profile": {"sex": sex, "age_group": age, "is_minor": minor},
            "destination": {"department_code": department},
            "conveyance": "FEDERAL_CHARTER_FLIGHT",
            "return_type": "REMOVAL_DEPORTATION",
            "returned_from_country": "US",
            "accompaniment": accompaniment,
            "medical_attention_required": False,
        },
    }


def referral(event_id: str, referral_id: str, event: str, at: datetime) -> dict[str, Any]:
    return {
        "envelope": {"event_id": event_id, "occurred_at": int(at.timestamp() * 1000)},
        "payload": {
            "referral_id": referral_id,
            "lifecycle_event": event,
            "status": "ACCEPTED" if event == "ACCEPTED" else "SENT",
            "service_group": "HEALTH",
            "urgency": "STANDARD",
            "subject_profile": {"sex": "MALE", "age_group": "AGE_18_29"},
        },
    }


def test_periods_are_local_days_iso_weeks_and_months() -> None:
    day = date(2026, 12, 31)
    assert period_label(day, "day") == "2026-12-31"
    assert period_label(day, "week") == "2026-W53"
    assert period_label(day, "month") == "2026-12"
    assert period_bounds(day, "week") == (date(2026, 12, 28), date(2027, 1, 3))
    assert period_bounds(day, "month") == (date(2026, 12, 1), day)
    # 03:00 UTC on 1 December is still 30 November in San Salvador (UTC-6)
    late = {
        "envelope": {
            "occurred_at": int(datetime(2026, 12, 1, 3, tzinfo=UTC).timestamp() * 1000)
        }
    }
    assert occurred_day(late) == date(2026, 11, 30)
    assert periods_between(date(2026, 11, 20), date(2027, 1, 2), "month") == [
        (date(2026, 11, 1), date(2026, 11, 30)),
        (date(2026, 12, 1), date(2026, 12, 31)),
        (date(2027, 1, 1), date(2027, 1, 31)),
    ]


def test_a_redelivered_event_is_counted_once(catalogue: Catalogue) -> None:
    tally = Tally(catalogue)
    first = tally.add("return_arrival", arrival("e1"))
    again = tally.add("return_arrival", arrival("e1"))
    assert {c.indicator for c in first} == {"returns"}
    assert again == []
    assert sum(tally.day_counts("returns").values()) == 1


def test_ids_decoded_as_uuids_count_like_their_text(catalogue: Catalogue) -> None:
    tally = Tally(catalogue)
    record = arrival("0b6a3f36-61b6-4a57-9f5e-8e1f4ff0e1a1")
    as_uuid = {**record, "envelope": {**record["envelope"]}}
    as_uuid["envelope"]["event_id"] = uuid.UUID(record["envelope"]["event_id"])
    assert tally.add("return_arrival", as_uuid)
    assert tally.add("return_arrival", record) == []


def test_a_filter_selects_only_its_events(catalogue: Catalogue) -> None:
    tally = Tally(catalogue)
    tally.add("return_arrival", arrival("adult"))
    child = arrival(
        "child", minor=True, age="AGE_12_17", accompaniment="CHILD_UNACCOMPANIED"
    )
    tally.add("return_arrival", child)
    assert sum(tally.day_counts("unaccompanied_children_returned").values()) == 1
    assert sum(tally.day_counts("returns").values()) == 2


def test_an_answer_is_put_in_its_time_to_acknowledgement_band(
    catalogue: Catalogue,
) -> None:
    tally = Tally(catalogue)
    tally.add("referral", referral("c1", "r1", "CREATED", NOON))
    tally.add("referral", referral("a1", "r1", "ACCEPTED", NOON + timedelta(hours=30)))
    tally.add("referral", referral("d1", "r1", "COMPLETED", NOON + timedelta(days=9)))
    cells = tally.day_counts("referral_status_changes")
    assert sorted(cell[3] for _, cell in cells) == ["24H_TO_72H", "NOT_AN_ANSWER"]
    assert ack_band(NOON, NOON + timedelta(hours=2)) == "UNDER_24H"
    assert ack_band(NOON, NOON + timedelta(days=4)) == "OVER_72H"


def test_the_store_counts_exactly_what_the_tally_counts_and_survives_a_reopen(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    records = [
        ("return_arrival", arrival(f"e{i}", sex="MALE" if i % 3 else "FEMALE"))
        for i in range(12)
    ]
    records += [("referral", referral("c", "r", "CREATED", NOON))]
    records += [("referral", referral("a", "r", "ACCEPTED", NOON + timedelta(hours=1)))]
    path = tmp_path / "counts.sqlite"
    store = Store.open(path)
    first = store.apply(catalogue, records[:7])
    store.close()
    store = Store.open(path)
    second = store.apply(catalogue, records)  # the first seven again: read twice
    tally = Tally(catalogue)
    tally.add_all(records)
    assert (first.counted, second.counted, second.duplicates) == (7, 7, 7)
    for indicator in catalogue.indicators:
        assert store.day_counts(indicator) == dict(tally.day_counts(indicator))
    assert store.events() == 14
    assert oct(path.stat().st_mode & 0o777) == "0o600"
    store.close()


def test_primary_suppression_hides_small_cells_and_their_complements() -> None:
    # sex x department: one woman in SV-AH; every other cell large
    finest: dict[tuple[str, ...], int] = {
        ("F", "SV-SS"): 20,
        ("M", "SV-SS"): 30,
        ("F", "SV-AH"): 1,
        ("M", "SV-AH"): 9,
    }
    result = protect(finest, 2, 5)
    # she could be recovered from her row or column margin minus a neighbour, so
    # a neighbour in each is hidden, and then the fourth cell closes the cycle
    assert result.suppressed == {
        ((0, 1), ("F", "SV-AH")): "primary",
        ((0, 1), ("M", "SV-AH")): "complementary",
        ((0, 1), ("F", "SV-SS")): "complementary",
        ((0, 1), ("M", "SV-SS")): "complementary",
    }
    assert result.published(((1,), ("SV-AH",))) == 10
    assert result.published(((), ())) == 60


def released(counts: DayCounts, through: date = date(2026, 12, 31)) -> Counts:
    """``counts`` as released through ``through``."""
    return Counts(released=counts, through=through, release_after=3)


def test_a_table_states_what_was_suppressed_and_why(catalogue: Catalogue) -> None:
    indicator = catalogue.get("returns")
    tally = Tally(catalogue)
    for i in range(9):
        tally.add("return_arrival", arrival(f"s{i}", department="SV-SS"))
    tally.add("return_arrival", arrival("a0", department="SV-AH"))
    publication = publish(
        indicator,
        released(tally.day_counts("returns")),
        date(2026, 11, 1),
        date(2026, 11, 30),
        ["department"],
    )
    body = as_json(publication)
    cells = body["tables"][0]["cells"]
    assert {"department": "ALL", "count": 10} in cells
    assert {"department": "SV-AH", "count": None, "suppressed": "primary"} in cells
    assert {"department": "SV-SS", "count": None, "suppressed": "complementary"} in cells
    assert body["disclosure_control"]["suppressed_primary"] == 1
    assert json.loads(json.dumps(body)) == body


def test_a_reader_may_not_break_down_by_what_its_grant_lacks(
    catalogue: Catalogue,
) -> None:
    indicator = catalogue.get("h2_departures")
    with pytest.raises(QueryError, match="counterpart_country"):
        publish(
            indicator,
            released({}),
            NOON.date(),
            NOON.date(),
            ["counterpart_country"],
            reader="mtps",
        )
    publish(
        indicator,
        released({}),
        NOON.date(),
        NOON.date(),
        ["counterpart_country"],
        reader="rree_vmdmh",
    )
    with pytest.raises(QueryError, match="at most 2"):
        publish(
            indicator,
            released({}),
            NOON.date(),
            NOON.date(),
            ["sex", "age_group", "programme"],
        )


def test_the_hxl_csv_parses_with_libhxl_and_its_tags_are_valid(
    catalogue: Catalogue,
) -> None:
    indicator = catalogue.get("returns")
    tally = Tally(catalogue)
    for i in range(40):
        sex = "FEMALE" if i % 2 else "MALE"
        age = "AGE_0_4" if i % 5 == 0 else "AGE_18_29"
        tally.add("return_arrival", arrival(f"h{i}", sex=sex, age=age))
    publication = publish(
        indicator,
        released(tally.day_counts("returns")),
        date(2026, 11, 1),
        date(2026, 11, 30),
        ["sex", "age_group"],
    )
    text = as_hxl_csv(publication)
    header, hashtags = list(csv.reader(io.StringIO(text)))[:2]
    assert header[:3] == ["Period", "From", "To"]
    data = hxl.data(
        hxl.input.make_input(io.BytesIO(text.encode()), hxl.input.InputOptions())
    )
    tags = [c.display_tag for c in data.columns]
    assert tags == [
        "#date", "#date+start", "#date+end", "#gender+code", "#age+range",
        "#affected+returnees", "#meta+suppressed",
    ]  # fmt: skip
    assert tags == [t.replace(" ", "") for t in hashtags]
    rows = list(data)
    total = [r for r in rows if r.get("#gender") == "all" and r.get("#age") == "all"]
    assert [r.get("#affected+returnees") for r in total] == ["40"]
    women = [r for r in rows if r.get("#gender") == "f" and r.get("#age") == "all"]
    assert [r.get("#affected") for r in women] == ["20"]
    for row in rows:
        value = row.get("#affected")
        assert value in {"", None} or int(value) in {0, *range(indicator.threshold, 41)}


def test_the_gauges_export_only_published_totals(
    catalogue: Catalogue, tmp_path: Path
) -> None:
    store = Store.open(tmp_path / "counts.sqlite")
    store.apply(catalogue, [("return_arrival", arrival(f"g{i}")) for i in range(7)])
    child = arrival("c", minor=True, age="AGE_12_17", accompaniment="CHILD_SEPARATED")
    store.apply(catalogue, [("return_arrival", child)])
    registry = CollectorRegistry()
    registry.register(IndicatorCollector(catalogue, lambda: store, NOON.date))

    def total(indicator: str) -> float | None:
        group = catalogue.get(indicator).working_group
        labels = {"indicator": indicator, "working_group": group}
        return registry.get_sample_value(
            "puente_indicator_total", {**labels, "period": "month"}
        )

    assert total("returns") == 8
    # one unaccompanied child: suppressed, so not exported
    assert total("unaccompanied_children_returned") is None
    store.close()


def test_the_fast_modular_search_agrees_with_exact_arithmetic() -> None:
    rng = random.Random(5)
    for _ in range(30):
        finest: dict[tuple[str, ...], int] = {}
        for _ in range(rng.randint(5, 80)):
            key = (rng.choice("ab"), rng.choice("xyz"), rng.choice("pqrs"))
            finest[key] = finest.get(key, 0) + 1
        counts = lattice(finest, 3)
        hidden = {k: PRIMARY for k, n in counts.items() if 0 < n < 5}
        eqs = equations(counts)
        assert determined_cells(counts, hidden, eqs, exact=False) == determined_cells(
            counts, hidden, eqs, exact=True
        )
