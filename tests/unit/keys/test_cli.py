"""``puente keys list / rotate`` and ``puente subject-key`` through the real command."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.audit import querylog
from services.audit.credentials import CredentialStore, Role
from services.audit.ledger import Ledger
from services.cli import app
from services.contracts.catalog import Catalog
from services.policy.subject import SubjectKeys
from tests.unit.policy.records import identity, record

OLD = bytes(range(32))
NEW = bytes(range(100, 132))
SUBJECT_KEY = ["subject-key", "--operator-attests-oversight", "--document"]


@pytest.fixture
def runner() -> CliRunner:
    return CliRunner()


@pytest.fixture
def two_versions(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("PUENTE_STATE_DIR", str(tmp_path))
    monkeypatch.setenv("PUENTE_HUB_KEYS", f"k1:{OLD.hex()},k2:{NEW.hex()}")


def _keys(output: str) -> list[str]:
    return [line.split()[0] for line in output.splitlines()]


@pytest.mark.usefixtures("two_versions")
def test_subject_key_prints_what_the_router_computes_under_every_version(
    runner: CliRunner, catalog: Catalog
) -> None:
    arrival = record(
        catalog,
        "return_arrival",
        {"payload.person_identity": identity("DUI", "012345678")},
    )
    done = runner.invoke(app, [*SUBJECT_KEY, "dui:01234567-8"])
    assert done.exit_code == 0, done.stderr
    expected = [
        SubjectKeys(NEW, 2).subject_key("return_arrival", arrival)[0],
        SubjectKeys(OLD, 1).subject_key("return_arrival", arrival)[0],
    ]
    assert _keys(done.stdout) == expected
    assert [key[:3] for key in _keys(done.stdout)] == ["k2:", "k1:"]


@pytest.mark.usefixtures("two_versions")
def test_subject_key_of_a_foreign_passport_uses_the_issuing_country(
    runner: CliRunner, catalog: Catalog
) -> None:
    traveller = identity("PASSPORT_FOREIGN", "G-1234567")
    traveller["documents"][0]["issuing_country"] = "GT"
    crossing = record(
        catalog, "border_crossing", {"payload.traveller_identity": traveller}
    )
    args = [*SUBJECT_KEY, "PASSPORT_FOREIGN:G1234567"]
    done = runner.invoke(app, [*args, "--country", "gt"])
    assert done.exit_code == 0, done.stderr
    current = SubjectKeys(NEW, 2).subject_key("border_crossing", crossing)[0]
    assert _keys(done.stdout)[0] == current
    without = runner.invoke(app, args)
    assert _keys(without.stdout)[0] != current
    assert "include the issuing country" in without.stderr


@pytest.mark.usefixtures("two_versions")
def test_subject_key_in_production_needs_an_oversight_credential(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUENTE_ENV", "production")
    store = CredentialStore(tmp_path / "audit" / "credentials.sqlite")
    dpo, oversight = store.create(Role.OVERSIGHT, label="data protection officer")
    _, institution = store.create(Role.INSTITUTION, institution="minsal")
    revoked, gone = store.create(Role.OVERSIGHT)
    store.revoke(revoked.id)
    store.close()
    args = ["subject-key", "--document", "DUI:01234567-8"]
    refused = runner.invoke(app, [*args, "--operator-attests-oversight"])
    assert refused.exit_code == 1
    assert refused.stdout == ""
    assert refused.stderr.strip().splitlines() == [
        "error: subject keys are for the oversight role: give --oversight-credential "
        "(or PUENTE_OVERSIGHT_CREDENTIAL), an audit credential of role oversight"
    ]
    for token in (institution, gone, "pta_" + "0" * 64):
        wrong = runner.invoke(app, [*args, "--oversight-credential", token])
        assert wrong.exit_code == 1
        assert wrong.stdout == ""
        assert "not a live audit credential of role oversight" in wrong.stderr
    monkeypatch.setenv("PUENTE_OVERSIGHT_CREDENTIAL", oversight)
    unlogged = runner.invoke(app, args)
    assert unlogged.exit_code == 1
    assert unlogged.stdout == ""
    assert "no audit ledger at" in unlogged.stderr
    ledger = tmp_path / "audit" / "ledger.sqlite"
    Ledger.open_writer(ledger).close()
    allowed = runner.invoke(app, args)
    assert allowed.exit_code == 0, allowed.stderr
    assert len(_keys(allowed.stdout)) == 2
    assert oversight not in allowed.stderr
    reader = Ledger.open_reader(ledger)
    asked = querylog.read(reader)
    reader.close()
    assert [(a.credential_id, a.role, a.query, a.query_key) for a in asked] == [
        (dpo.id, "oversight", "subject-key", _keys(allowed.stdout)[0])
    ]


@pytest.mark.usefixtures("two_versions")
def test_subject_key_in_development_needs_a_credential_or_the_operators_word(
    runner: CliRunner,
) -> None:
    args = ["subject-key", "--document", "DUI:01234567-8"]
    refused = runner.invoke(app, args)
    assert refused.exit_code == 1
    assert "--operator-attests-oversight" in refused.stderr
    missing = runner.invoke(app, [*args, "--oversight-credential", "pta_" + "0" * 64])
    assert missing.exit_code == 1
    assert "no audit credential store" in missing.stderr
    attested = runner.invoke(app, [*args, "--operator-attests-oversight"])
    assert attested.exit_code == 0
    assert len(_keys(attested.stdout)) == 2


@pytest.mark.usefixtures("two_versions")
def test_a_document_the_hub_does_not_key_on_is_an_error(runner: CliRunner) -> None:
    for value in ("NONE:123", "DUI:--", "DUI"):
        done = runner.invoke(app, [*SUBJECT_KEY, value])
        assert done.exit_code == 1, value
        assert done.stdout == ""
        assert done.stderr.startswith("error: ")


def test_rotate_appends_to_the_development_key_file(
    runner: CliRunner, monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PUENTE_STATE_DIR", str(tmp_path))
    path = tmp_path / "keys" / "hub.key"
    first = runner.invoke(app, [*SUBJECT_KEY, "DUI:01234567-8"])
    before = path.read_text()
    done = runner.invoke(app, ["keys", "rotate"])
    assert done.exit_code == 0
    assert done.stdout.startswith("added hub key version k2 to ")
    assert path.read_text().startswith(before)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    after = runner.invoke(app, [*SUBJECT_KEY, "DUI:01234567-8"])
    assert _keys(after.stdout)[1] == _keys(first.stdout)[0]
    assert _keys(after.stdout)[0].startswith("k2:")
    listed = runner.invoke(app, ["keys", "list"]).stdout
    assert "k2  fingerprint" in listed
    assert "current" in listed.splitlines()[1]
    assert all(secret not in listed for secret in path.read_text().split())


@pytest.mark.usefixtures("two_versions")
def test_rotate_with_explicit_keys_prints_only_the_new_line(runner: CliRunner) -> None:
    done = runner.invoke(app, ["keys", "rotate"])
    assert done.exit_code == 0
    line = done.stdout.strip()
    assert line.startswith("k3:")
    assert len(bytes.fromhex(line.removeprefix("k3:"))) == 32
    assert "keep every older line" in done.stderr
