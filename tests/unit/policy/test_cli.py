"""``puente policy check / explain`` and ``puente schemas export``."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import typer
from typer.testing import CliRunner

from services.cli import policy as policy_cli
from services.cli import schemas as schemas_cli
from services.contracts.catalog import Catalog
from services.policy import Policy
from services.runtime.settings import REPO_ROOT

root = typer.Typer()
root.add_typer(policy_cli.app, name="policy")
root.add_typer(schemas_cli.app, name="schemas")
runner = CliRunner()


def _run(*args: str) -> tuple[int, str, str]:
    result = runner.invoke(root, list(args))
    return result.exit_code, result.stdout, result.stderr


def test_check_prints_a_summary_of_the_policy(policy: Policy) -> None:
    code, out, _ = _run("policy", "check")
    assert code == 0
    assert f"ok: policy {policy.version}" in out
    assert "rules for referral: 19" in out
    assert "fgr" in out
    assert "pnc" in out


def test_check_exits_1_with_the_precise_error(tmp_path: Path) -> None:
    broken = tmp_path / "policy"
    shutil.copytree(REPO_ROOT / "deploy" / "policy", broken)
    rules = broken / "rules" / "referral.toml"
    rules.write_text(
        rules.read_text().replace('recipients = ["pgr"]', 'recipients = ["pgrr"]')
    )
    code, out, err = _run("policy", "check", "--policy-dir", str(broken))
    assert code == 1
    assert "rule 'referral-to-legal-aid': unknown institution 'pgrr'" in err
    assert "ok:" not in out


def test_explain_lists_each_rule_with_its_fields() -> None:
    code, out, _ = _run(
        "policy", "explain", "--recipient", "rree_vmdmh", "--event-type", "return_arrival"
    )
    assert code == 0
    assert "rule rree_vmdmh-ra-employment" in out
    assert "rule rree_vmdmh-ra-monitoring" in out
    assert "EMPLOYMENT_REINTEGRATION" in out
    assert "payload.person_identity.phone" in out
    assert "payload.person_profile.age_years" not in out
    assert "rule conapina" not in out


def test_explain_says_when_an_institution_gets_no_stream() -> None:
    code, out, _ = _run("policy", "explain", "--recipient", "marn")
    assert code == 0
    assert "No per-record deliveries: it gets no stream." in out
    assert "aggregates only: displacement_registration" in out
    code, out, _ = _run(
        "policy", "explain", "--recipient", "pnc", "--event-type", "return_arrival"
    )
    assert "No per-record deliveries of return_arrival: it gets no stream." in out


def test_explain_refuses_an_unknown_institution_or_event_type() -> None:
    code, _, err = _run("policy", "explain", "--recipient", "conna")
    assert code == 1
    assert "unknown institution 'conna'" in err
    code, _, err = _run(
        "policy", "explain", "--recipient", "conapina", "--event-type", "arrival"
    )
    assert code == 1
    assert "unknown event type 'arrival'" in err


def test_export_writes_the_schemas_a_recipient_decodes_with(
    tmp_path: Path, catalog: Catalog, policy: Policy
) -> None:
    out_dir = tmp_path / "schemas"
    code, out, _ = _run(
        "schemas", "export", "--recipient", "rree_vmdmh", "--out", str(out_dir)
    )
    assert code == 0, out
    files = sorted(p.name for p in out_dir.glob("*.avsc"))
    stems = [
        "border_crossing.PSEUDO",
        "referral.PSEUDO",
        "referral.rule.referral-revocation-notice",
        "referral.rule.referral-expiry-to-receiving",
        "referral.rule.referral-expiry-to-referring",
        "referral.rule.referral-expiry-oversight",
        "referral",
        "return_arrival.rule.rree_vmdmh-ra-employment",
        "return_arrival.rule.rree_vmdmh-ra-monitoring",
    ]
    # every schema version a source may write: v1 and v2 of each
    expected = [f"{stem}.v{v}.avsc" for stem in stems for v in (1, 2)]
    # and the referral tracker's overdue notices, the oversight's own (v1 only)
    overdue = ["PSEUDO", "rule.referral_overdue-to-oversight-specialised", ""]
    expected += [f"referral_overdue{'.' if s else ''}{s}.v1.avsc" for s in overdue]
    assert files == sorted(expected)
    readme = (out_dir / "README.md").read_text()
    assert "rree_vmdmh-ref-oversight (PSEUDO)" in readme
    exported = json.loads((out_dir / "referral.PSEUDO.v1.avsc").read_text())
    assert exported == catalog.get("referral.PSEUDO").schema


def test_export_for_a_member_without_deliveries_writes_nothing(tmp_path: Path) -> None:
    code, out, _ = _run(
        "schemas", "export", "--recipient", "ace", "--out", str(tmp_path / "x")
    )
    assert code == 0
    assert "receives no per-record deliveries" in out
    assert not (tmp_path / "x").exists()


@pytest.mark.parametrize(
    "command", [("policy", "check"), ("policy", "explain", "--recipient", "dgme")]
)
def test_a_missing_schema_folder_is_an_error_not_a_traceback(
    tmp_path: Path, command: tuple[str, ...]
) -> None:
    code, _, err = _run(*command, "--schemas-dir", str(tmp_path / "none"))
    assert code == 1
    assert "does not exist" in err
