"""The indicator catalogue: the shipped one, precise errors, and the CLI over it."""

from __future__ import annotations

import json
import re
from datetime import UTC, date, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app as root
from services.contracts.catalog import Catalog
from services.indicators.catalogue import load_catalogue
from services.indicators.errors import CatalogueError, UnknownIndicatorError
from services.indicators.store import Store
from services.policy import Policy
from tests.unit.indicators.conftest import POLICY_DIR, indicator_block

SHIPPED = (POLICY_DIR / "indicators.toml").read_text(encoding="utf-8")
runner = CliRunner()


def test_the_shipped_catalogue_has_the_issues_indicators(
    catalog: Catalog, policy: Policy
) -> None:
    catalogue = load_catalogue(POLICY_DIR, catalog, policy)
    assert len(catalogue.indicators) >= 12
    assert {i.event_type for i in catalogue.indicators.values()} == {
        "return_arrival", "border_crossing", "displacement_registration", "referral"
    }  # fmt: skip
    assert {i.working_group for i in catalogue.indicators.values()} >= {
        "prevention", "protection", "labour_mobility", "return_reintegration",
        "environment",
    }  # fmt: skip
    with pytest.raises(UnknownIndicatorError, match="known: returns"):
        catalogue.get("nope")


def test_every_aggregate_grant_reads_at_least_one_indicator_of_each_event_type(
    catalog: Catalog, policy: Policy
) -> None:
    catalogue = load_catalogue(POLICY_DIR, catalog, policy)
    for grant in policy.aggregates:
        for event_type in grant.event_types:
            readable = [
                i
                for i in catalogue.readable_by(grant.recipient)
                if i.event_type == event_type
            ]
            assert readable, f"{grant.recipient} gets nothing of {event_type}"


def test_a_grants_by_fields_open_the_restricted_breakdowns(
    catalog: Catalog, policy: Policy
) -> None:
    disaster = load_catalogue(POLICY_DIR, catalog, policy).get("disaster_displacement")
    assert "municipality" in disaster.reader_dimensions["marn"]
    assert "municipality" not in disaster.reader_dimensions["io_oim"]


def broken(tmp_path: Path, old: str, new: str) -> Path:
    assert old in SHIPPED
    path = tmp_path / "indicators.toml"
    path.write_text(SHIPPED.replace(old, new, 1), encoding="utf-8")
    return path


@pytest.mark.parametrize(
    ("old", "new", "message"),
    [
        (
            'return_arrival = "payload.destination.department_code"',
            'return_arrival = "payload.destination.departement_code"',
            "dimension 'department': payload.destination.departement_code is not a "
            "field of return_arrival",
        ),
        (
            'readers = ["bcr", "bcr_onec"',
            'readers = ["dgme", "bcr_onec"',
            "indicator 'returns': reader 'dgme' holds no aggregate grant for "
            "return_arrival",
        ),
        (
            'working_group = "diaspora"',
            'working_group = "diaspra"',
            "indicator 'returns_after_a_year_abroad': unknown working group 'diaspra'",
        ),
        (
            'filter = "payload.medical_attention_required"',
            'filter = "payload.medical_attention_requird"',
            "indicator 'returns_needing_medical_attention': filter:",
        ),
        (
            'hxl = "#affected+returnees"',
            'hxl = "affected returnees"',
            "is not an HXL hashtag",
        ),
        ("gcm_objective = 21", "gcm_objective = 24", "gcm_objective 24 is not 1 to 23"),
        (
            'dimensions = ["sex", "age_group", "conveyance"]',
            'dimensions = ["sex", "age_group", "conveyance", "hazard_type"]',
            "dimension 'hazard_type' reads no field of return_arrival",
        ),
        ('period = "month"', 'period = "year"', "defaults.period"),
        (
            "filter = \"payload.lifecycle_event != 'CREATED'\"",
            "filter = \"payload.lifecycle_event == 'CREATED'\"",
            "indicators 'referrals_sent' and 'referral_status_changes' count the same "
            "events",
        ),
        ('id = "returns"\n', 'id = "returns"\nweight = 2\n', "unknown key 'weight'"),
    ],
)
def test_a_catalogue_mistake_is_reported_where_it_is(
    catalog: Catalog,
    policy: Policy,
    tmp_path: Path,
    old: str,
    new: str,
    message: str,
) -> None:
    path = broken(tmp_path, old, new)
    with pytest.raises(CatalogueError, match=re.escape(message)):
        load_catalogue(POLICY_DIR, catalog, policy, path)


def test_a_missing_catalogue_is_one_clear_error(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    with pytest.raises(CatalogueError, match="does not exist"):
        load_catalogue(POLICY_DIR, catalog, policy, tmp_path / "none.toml")


def test_list_and_show_print_the_catalogue() -> None:
    listed = runner.invoke(root, ["indicators", "list", "--json"])
    assert listed.exit_code == 0, listed.output
    ids = [i["id"] for i in json.loads(listed.stdout)]
    assert "h2_departures" in ids
    shown = runner.invoke(root, ["indicators", "show", "h2_departures", "--json"])
    assert shown.exit_code == 0
    detail = json.loads(shown.stdout)
    assert detail["readers"]["rree_vmdmh"] == [
        "sex", "age_group", "programme", "counterpart_country"
    ]  # fmt: skip
    assert detail["readers"]["mtps"] == ["sex", "age_group", "programme"]
    missing = runner.invoke(root, ["indicators", "show", "nope"])
    assert missing.exit_code == 1
    assert "no indicator 'nope'" in missing.stderr


def test_export_prints_protected_tables_from_the_database(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    catalogue = load_catalogue(POLICY_DIR, catalog, policy)
    db = tmp_path / "counts.sqlite"
    store = Store.open(db)
    records = [
        (
            "return_arrival",
            {
                "envelope": {"event_id": f"e{i}", "occurred_at": 1_794_326_400_000},
                "payload": {"person_profile": {"sex": "FEMALE" if i < 7 else "MALE"}},
            },
        )
        for i in range(9)
    ]
    store.apply(catalogue, records)
    # Only released periods are exported (test_indicators_releases.py).
    store.release({"returns": date(2026, 11, 30)}, datetime.now(UTC))
    store.close()
    args = ["indicators", "export", "returns", "--db", str(db), "--by", "sex"]
    args += ["--from", "2026-11-01", "--to", "2026-11-30"]
    as_json = runner.invoke(root, args)
    assert as_json.exit_code == 0, as_json.output
    cells = json.loads(as_json.stdout)["tables"][0]["cells"]
    assert {"sex": "ALL", "count": 9} in cells
    assert {"sex": "MALE", "count": None, "suppressed": "primary"} in cells
    as_csv = runner.invoke(root, [*args, "--format", "hxl-csv"])
    assert as_csv.exit_code == 0
    assert as_csv.stdout.splitlines()[1].startswith("#date,#date+start,#date+end")
    refused = runner.invoke(root, [*args, "--as", "mtps"])
    assert refused.exit_code == 1


# ---------------------------------------------------------------- linked indicators

DIMENSIONS = SHIPPED[: SHIPPED.index("\n[[indicator]]\n") + 1]


def load_small(
    catalog: Catalog, policy: Policy, tmp_path: Path, *blocks: str, head: str = ""
) -> None:
    path = tmp_path / "indicators.toml"
    path.write_text((head or DIMENSIONS) + "\n".join(blocks), encoding="utf-8")
    load_catalogue(POLICY_DIR, catalog, policy, path)


ALL_RETURNS = indicator_block("all_returns", ["sex", "age_group", "conveyance"])


@pytest.mark.parametrize(
    ("sub", "fields"),
    [
        (  # a breakdown value of the other
            indicator_block("charter_returns", ["sex"], "payload.conveyance == 'OTHER'"),
            "payload.conveyance ('all_returns' breaks down by conveyance)",
        ),
        (  # a field the other's age group gives away (determines)
            indicator_block(
                "children_returned", ["sex"], "payload.person_profile.is_minor"
            ),
            "payload.person_profile.is_minor ('all_returns' breaks down by age_group, "
            "which determines it)",
        ),
        (  # several values of two breakdowns
            indicator_block(
                "young_land_returns",
                ["sex"],
                "payload.person_profile.age_group == 'AGE_18_29' && "
                "(payload.conveyance == 'GROUND_CONVOY_BUS' || "
                "payload.conveyance == 'INDIVIDUAL_LAND')",
            ),
            "payload.conveyance ('all_returns' breaks down by conveyance), "
            "payload.person_profile.age_group ('all_returns' breaks down by age_group)",
        ),
    ],
)
def test_an_indicator_whose_filter_picks_cells_of_another_is_refused(
    catalog: Catalog, policy: Policy, tmp_path: Path, sub: str, fields: str
) -> None:
    with pytest.raises(CatalogueError) as refused:
        load_small(catalog, policy, tmp_path, ALL_RETURNS, sub)
    message = str(refused.value)
    sub_id = sub.split('id = "')[1].split('"', maxsplit=1)[0]
    assert f"indicators 'all_returns' and {sub_id!r} (return_arrival)" in message
    assert f"the filter of {sub_id!r} picks its events out of the cells of " in message
    assert f"'all_returns' through {fields}, so a cell one of them hides" in message
    assert f"make {sub_id!r} a breakdown of 'all_returns'" in message


def test_without_its_determines_declaration_a_filter_on_is_minor_would_pass(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    children = indicator_block(
        "children_returned", ["sex"], "payload.person_profile.is_minor"
    )
    declared = (
        "[dimensions.age_group.determines]\n"
        'return_arrival = ["payload.person_profile.is_minor"]\n'
    )
    assert declared in DIMENSIONS
    head = DIMENSIONS.replace(declared, "[dimensions.age_group.determines]\n")
    load_small(catalog, policy, tmp_path, ALL_RETURNS, children, head=head)
    with pytest.raises(CatalogueError, match="determines it"):
        load_small(catalog, policy, tmp_path, ALL_RETURNS, children)


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("payload.conveyance == 'OTHER'", "payload.conveyance != 'OTHER'"),
        ("payload.conveyance == 'OTHER'", "'COMMERCIAL_FLIGHT' == payload.conveyance"),
        (
            "payload.conveyance == 'OTHER' || payload.conveyance == 'UNKNOWN'",
            "payload.person_profile.is_minor && payload.conveyance == 'INDIVIDUAL_LAND'",
        ),
        # JMESPath's ! binds tighter than the dot: !(a.b) negates the field
        ("payload.medical_attention_required", "!(payload.medical_attention_required)"),
        (
            "payload.conveyance == 'OTHER' || payload.conveyance == 'UNKNOWN'",
            "payload.conveyance != 'OTHER' && payload.conveyance != 'UNKNOWN'",
        ),
    ],
)
def test_indicators_with_exclusive_filters_on_a_shared_breakdown_load(
    catalog: Catalog, policy: Policy, tmp_path: Path, first: str, second: str
) -> None:
    load_small(
        catalog,
        policy,
        tmp_path,
        indicator_block("first", ["sex", "conveyance"], first),
        indicator_block("second", ["age_group", "conveyance"], second),
    )


@pytest.mark.parametrize(
    ("first", "second"),
    [
        ("payload.conveyance != 'OTHER'", "payload.conveyance != 'UNKNOWN'"),
        (
            "payload.conveyance == 'OTHER' || payload.conveyance == 'UNKNOWN'",
            "payload.conveyance != 'OTHER'",
        ),
    ],
)
def test_filters_that_merely_differ_on_a_shared_breakdown_are_refused(
    catalog: Catalog, policy: Policy, tmp_path: Path, first: str, second: str
) -> None:
    with pytest.raises(CatalogueError, match="'first' and 'second'"):
        load_small(
            catalog,
            policy,
            tmp_path,
            indicator_block("first", ["conveyance"], first),
            indicator_block("second", ["sex"], second),
        )


@pytest.mark.parametrize(
    "sub",
    [
        indicator_block("long_stays", ["sex"], "payload.time_abroad == 'OVER_5_YEARS'"),
        indicator_block(
            "unaccompanied",
            ["sex", "age_group"],
            "payload.person_profile.is_minor && "
            "payload.accompaniment == 'CHILD_UNACCOMPANIED'",
        ),
        indicator_block(
            "medical_by_conveyance",
            ["conveyance", "age_group"],
            "payload.medical_attention_required",
        ),
    ],
)
def test_an_indicator_filtering_on_a_field_the_other_does_not_break_down_by_loads(
    catalog: Catalog, policy: Policy, tmp_path: Path, sub: str
) -> None:
    load_small(catalog, policy, tmp_path, ALL_RETURNS, sub)


def test_a_filter_narrowing_another_filter_by_its_breakdown_is_refused(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    # Both read time_abroad, which neither breaks down by: the second's events are
    # still the first's OTHER cell.
    with pytest.raises(CatalogueError, match="'long_stays' and 'long_stays_by_charter'"):
        load_small(
            catalog,
            policy,
            tmp_path,
            indicator_block(
                "long_stays", ["conveyance"], "payload.time_abroad == 'OVER_5_YEARS'"
            ),
            indicator_block(
                "long_stays_by_charter",
                ["sex"],
                "payload.time_abroad == 'OVER_5_YEARS' && payload.conveyance == 'OTHER'",
            ),
        )


def test_a_filter_on_a_field_another_filter_determines_is_refused(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    # Every teenager is a minor: the teenagers are the minors' AGE_12_17 cells.
    with pytest.raises(CatalogueError) as refused:
        load_small(
            catalog,
            policy,
            tmp_path,
            indicator_block(
                "teenagers", ["sex"], "payload.person_profile.age_group == 'AGE_12_17'"
            ),
            indicator_block(
                "minors", ["sex", "age_group"], "payload.person_profile.is_minor"
            ),
        )
    assert (
        "the filter of 'minors' picks its events out of the cells of 'teenagers' "
        "through payload.person_profile.is_minor (what 'teenagers' filters on "
        "determines it)"
    ) in str(refused.value)


def test_a_filter_whose_free_field_sits_in_an_or_is_refused(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    # Every OTHER-conveyance return passes the filter whatever its medical flag.
    with pytest.raises(CatalogueError, match="'all_returns' and 'other_or_medical'"):
        load_small(
            catalog,
            policy,
            tmp_path,
            ALL_RETURNS,
            indicator_block(
                "other_or_medical",
                ["conveyance"],
                "payload.conveyance == 'OTHER' || payload.medical_attention_required",
            ),
        )


@pytest.mark.parametrize(
    ("determines", "message"),
    [
        (
            'border_crossing = ["payload.traveller_profile.is_minor"]',
            "dimension 'conveyance': determines names border_crossing, for which the "
            "dimension reads no field",
        ),
        (
            'return_arrival = ["payload.person_profile.is_minr"]',
            "dimension 'conveyance': determines: payload.person_profile.is_minr is not "
            "a field of return_arrival",
        ),
    ],
)
def test_a_determines_mistake_is_reported_with_its_dimension(
    catalog: Catalog, policy: Policy, tmp_path: Path, determines: str, message: str
) -> None:
    old = '[dimensions.conveyance.fields]\nreturn_arrival = "payload.conveyance"\n'
    head = DIMENSIONS.replace(
        old, f"{old}[dimensions.conveyance.determines]\n{determines}\n"
    )
    assert head != DIMENSIONS
    with pytest.raises(CatalogueError, match=re.escape(message)):
        load_small(catalog, policy, tmp_path, ALL_RETURNS, head=head)
