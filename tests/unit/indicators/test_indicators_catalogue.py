"""The indicator catalogue: the shipped one, precise errors, and the CLI over it."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app as root
from services.contracts.catalog import Catalog
from services.indicators.catalogue import load_catalogue
from services.indicators.errors import CatalogueError, UnknownIndicatorError
from services.indicators.store import Store
from services.policy import Policy
from tests.unit.indicators.conftest import POLICY_DIR

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
