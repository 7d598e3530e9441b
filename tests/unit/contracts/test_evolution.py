from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.cli import app
from services.runtime.settings import REPO_ROOT

runner = CliRunner()


@pytest.fixture
def schemas(tmp_path: Path) -> Path:
    target = tmp_path / "schemas"
    shutil.copytree(REPO_ROOT / "schemas", target)
    return target


def add_version(schemas: Path, name: str, change: str) -> int:
    """Write the next version of ``name`` with ``change``; its version number."""
    latest = max(int(p.stem[1:]) for p in (schemas / name).glob("v*.avsc"))
    schema = json.loads((schemas / name / f"v{latest}.avsc").read_text())
    payload = next(f for f in schema["fields"] if f["name"] == "payload")["type"]
    if change == "add_optional":
        payload["fields"].append(
            {
                "name": "bus_number",
                "type": ["null", "string"],
                "default": None,
                "sensitivity": "INTERNAL",
            }
        )
    elif change == "add_required":
        payload["fields"].append(
            {"name": "bus_number", "type": "string", "sensitivity": "INTERNAL"}
        )
    elif change == "narrow_enum":
        field = next(f for f in payload["fields"] if f["name"] == "urgency")
        field["type"]["symbols"].remove("PRIORITY_72H")
        field["type"].pop("default")
        field.pop("default")
    (schemas / name / f"v{latest + 1}.avsc").write_text(json.dumps(schema))
    return latest + 1


def test_the_repository_schemas_pass_the_check() -> None:
    result = runner.invoke(app, ["schemas", "check"])
    assert result.exit_code == 0, result.output
    assert "BACKWARD compatible" in result.output


def test_adding_an_optional_field_is_backward_compatible(schemas: Path) -> None:
    add_version(schemas, "return_arrival", "add_optional")
    result = runner.invoke(app, ["schemas", "check", "--schemas-dir", str(schemas)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize(
    ("name", "change"), [("return_arrival", "add_required"), ("referral", "narrow_enum")]
)
def test_an_incompatible_new_version_is_caught(
    schemas: Path, name: str, change: str
) -> None:
    version = add_version(schemas, name, change)
    result = runner.invoke(app, ["schemas", "check", "--schemas-dir", str(schemas)])
    assert result.exit_code == 1
    assert f"{name}: v{version} cannot read v1 data" in result.output


def test_changing_a_published_version_is_caught(schemas: Path) -> None:
    path = schemas / "shared" / "v1.avsc"
    path.write_text(
        path.read_text().replace('"AGE_60_PLUS",', '"AGE_60_PLUS", "AGE_90_PLUS",')
    )
    result = runner.invoke(app, ["schemas", "check", "--schemas-dir", str(schemas)])
    assert result.exit_code == 1
    assert "published v1 changed" in result.output


def test_schemas_list_prints_every_event_type_with_its_fingerprint() -> None:
    result = runner.invoke(app, ["schemas", "list"])
    assert result.exit_code == 0
    for name in (
        "return_arrival",
        "border_crossing",
        "displacement_registration",
        "referral",
    ):
        assert name in result.output
    lock = json.loads((REPO_ROOT / "schemas" / "fingerprints.json").read_text())
    assert lock["referral"]["1"] in result.output


def test_schemas_show_prints_a_self_contained_schema() -> None:
    result = runner.invoke(app, ["schemas", "show", "border_crossing", "--version", "1"])
    assert result.exit_code == 0
    schema = json.loads(result.output)
    text = json.dumps(schema)
    assert text.count('"name": "PersonProfile"') == 1
    assert '"sensitivity": "DIRECT_IDENTIFIER"' in text
    assert "schema_version" not in text


def test_schemas_show_of_an_unknown_version_fails_clearly() -> None:
    result = runner.invoke(app, ["schemas", "show", "referral", "--version", "7"])
    assert result.exit_code == 1
    assert "no version 7" in result.output
