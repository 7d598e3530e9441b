"""Versioned hub keys: kN:/rN: prefixes, old versions kept, rotation appends."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.contracts.catalog import Catalog
from services.policy import KeyMaterialError, SubjectKeys
from services.policy.hub_keys import fingerprint, parse_hub_keys
from services.runtime import environment
from services.runtime.environment import ExplicitKeyRequiredError
from services.runtime.hub_key_store import (
    HubKeySettings,
    load_hub_keys,
    rotate,
    subject_keys,
)
from services.runtime.settings import HubSettings
from tests.unit.policy.records import record

OLD = bytes(range(32))
NEW = bytes(range(100, 132))


@pytest.fixture(autouse=True)
def _quiet(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in (
        "PUENTE_ENV",
        "PUENTE_HUB_KEY",
        "PUENTE_HUB_KEYS",
        "PUENTE_HUB_KEY_FILE",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(environment, "_announced", set())


def _mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_newest_version_makes_kn_and_rn_keys_and_old_versions_keep_theirs(
    tmp_path: Path, catalog: Catalog
) -> None:
    both = HubKeySettings(
        hub_keys=SecretStr(f"k1:{OLD.hex()},k2:{NEW.hex()}"),
        hub=HubSettings(state_dir=tmp_path),
    )
    datum = record(catalog, "return_arrival")
    key, basis = subject_keys(both).subject_key("return_arrival", datum)
    assert basis == "DUI"
    assert key is not None
    assert key.startswith("k2:")
    assert subject_keys(both).rekey("minsal", key).startswith("r2:")
    before = SubjectKeys(OLD).subject_key("return_arrival", datum)
    versions = load_hub_keys(both).every_version()
    assert [v.version for v in versions] == [2, 1]
    assert versions[1].subject_key("return_arrival", datum) == before
    assert versions[0].subject_key("return_arrival", datum) == (key, basis)
    assert key[3:] != (before[0] or "")[3:]


def test_a_key_file_holds_one_version_per_line_and_a_bare_key_is_version_1(
    tmp_path: Path,
) -> None:
    path = tmp_path / "hub.keys"
    path.write_text(f"# rotated 2026-12-07\n{OLD.hex()}\n\nk3:{NEW.hex()}\n")
    keys = load_hub_keys(HubKeySettings(hub_key_file=path))
    assert keys.versions == {1: OLD, 3: NEW}
    assert keys.newest == 3
    assert keys.current().version == 3
    single = load_hub_keys(HubKeySettings(hub_key=SecretStr(OLD.hex())))
    assert single.versions == {1: OLD}
    assert OLD.hex() not in repr(keys)


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (f"k1:{OLD.hex()},k1:{NEW.hex()}", "entry 2: version k1 is given twice"),
        (f"{OLD.hex()}\nk1:{NEW.hex()}", "entry 2: version k1 is given twice"),
        (f"k1:{OLD.hex()},v2:{NEW.hex()}", "entry 2: write a versioned key as"),
        (f"k0:{OLD.hex()}", "entry 1: write a versioned key as"),
        (f"k1:{OLD.hex()},k2:{NEW.hex()[:20]}", "entry 2: the hub key has 10 bytes"),
        ("# only a comment\n", "no hub key in it"),
    ],
)
def test_a_malformed_key_ring_is_refused_without_echoing_keys(
    text: str, message: str
) -> None:
    with pytest.raises(KeyMaterialError, match=message) as caught:
        parse_hub_keys(text, "PUENTE_HUB_KEYS")
    assert OLD.hex() not in str(caught.value)
    assert NEW.hex()[:20] not in str(caught.value)


def test_two_key_settings_at_once_are_refused(tmp_path: Path) -> None:
    settings = HubKeySettings(
        hub_key=SecretStr(OLD.hex()), hub_key_file=tmp_path / "hub.keys"
    )
    with pytest.raises(KeyMaterialError, match="set exactly one of them"):
        load_hub_keys(settings)


def test_rotation_appends_a_version_to_the_development_file_and_keeps_the_old(
    tmp_path: Path, catalog: Catalog
) -> None:
    state = tmp_path / "new" / "state"
    settings = HubKeySettings(hub=HubSettings(state_dir=state))
    datum = record(catalog, "return_arrival")
    first = load_hub_keys(settings)
    path = state / "keys" / "hub.key"
    before = path.read_text()
    old_key, _ = first.current().subject_key("return_arrival", datum)
    rotation = rotate(settings)
    assert rotation.version == 2
    assert rotation.written == path
    assert rotate(settings).version == 3
    after = path.read_text()
    assert after.startswith(before)
    assert after.count("\n") == 3
    keys = load_hub_keys(settings)
    assert sorted(keys.versions) == [1, 2, 3]
    assert keys.versions[1] == first.versions[1]
    new_key, _ = keys.current().subject_key("return_arrival", datum)
    assert (new_key or "").startswith("k3:")
    assert keys.every_version()[-1].subject_key("return_arrival", datum)[0] == old_key
    assert len({fingerprint(k) for k in keys.versions.values()}) == 3
    assert _mode(path) == 0o600
    assert _mode(path.parent) == _mode(state) == _mode(state.parent) == 0o700


def test_rotation_of_a_legacy_development_key_file_keeps_its_bare_line(
    tmp_path: Path,
) -> None:
    path = tmp_path / "keys" / "hub.key"
    path.parent.mkdir(mode=0o700)
    path.write_text(OLD.hex())  # an earlier release's file, without a newline
    path.chmod(0o644)
    settings = HubKeySettings(hub=HubSettings(state_dir=tmp_path))
    rotate(settings)
    assert path.read_text().splitlines()[0] == OLD.hex()
    assert load_hub_keys(settings).versions[1] == OLD
    assert _mode(path) == 0o600


def test_rotation_with_explicit_keys_only_prints_the_next_line(tmp_path: Path) -> None:
    path = tmp_path / "hub.keys"
    path.write_text(f"k1:{OLD.hex()}\nk2:{NEW.hex()}\n")
    rotation = rotate(HubKeySettings(hub_key_file=path))
    assert rotation.written is None
    assert rotation.version == 3
    assert rotation.line.startswith("k3:")
    assert len(bytes.fromhex(rotation.line[3:])) == 32
    assert path.read_text() == f"k1:{OLD.hex()}\nk2:{NEW.hex()}\n"
    assert rotation.line not in repr(rotation)


def test_rotation_in_production_without_keys_is_refused(tmp_path: Path) -> None:
    settings = HubKeySettings(hub=HubSettings(state_dir=tmp_path, env="production"))
    with pytest.raises(ExplicitKeyRequiredError):
        rotate(settings)
    assert not (tmp_path / "keys").exists()


def test_a_key_file_others_may_read_is_named_in_a_warning_without_the_key(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    path = tmp_path / "hub.keys"
    path.write_text(f"k1:{OLD.hex()}\n")
    path.chmod(0o600)
    with caplog.at_level("WARNING"):
        load_hub_keys(HubKeySettings(hub_key_file=path))
    assert not caplog.records
    path.chmod(0o644)
    with caplog.at_level("WARNING"):
        load_hub_keys(HubKeySettings(hub_key_file=path))
    assert [r.getMessage() for r in caplog.records] == [
        f"the hub key file {path} is readable by other users (mode 0644); "
        "make it 0600 or 0400"
    ]
