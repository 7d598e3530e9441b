"""Subject keys: document choice, normalisation, re-keying, where the key comes from."""

from __future__ import annotations

import base64
import hashlib
import hmac
import re
import stat
import unicodedata
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from pydantic import SecretStr

from services.contracts.catalog import Catalog
from services.policy import KeyMaterialError, SubjectKeys
from services.policy.subject import normalise_number
from services.runtime.hub_key_store import HubKeySettings, load_hub_key, subject_keys
from services.runtime.settings import HubSettings
from tests.unit.policy.conftest import TEST_HUB_KEY
from tests.unit.policy.records import identity, profile, record

KEY_FORMAT = re.compile(r"k1:[a-z2-7]{52}")


def _documents(*docs: tuple[str, str], country: str = "SV") -> dict[str, Any]:
    person = identity()
    person["documents"] = [
        {"document_type": t, "document_number": n, "issuing_country": country}
        for t, n in docs
    ]
    return {"payload.person_identity": person}


def test_a_dui_is_preferred_over_a_passport_whatever_the_order(
    keys: SubjectKeys, catalog: Catalog
) -> None:
    first = record(
        catalog,
        "return_arrival",
        _documents(("PASSPORT_SV", "A1"), ("DUI", "01234567-8")),
    )
    second = record(
        catalog,
        "return_arrival",
        _documents(("DUI", "01234567-8"), ("PASSPORT_SV", "A1")),
    )
    key, basis = keys.subject_key("return_arrival", first)
    assert basis == "DUI"
    assert KEY_FORMAT.fullmatch(key or "")
    assert keys.subject_key("return_arrival", second) == (key, basis)


def test_document_numbers_are_normalised_before_keying(
    keys: SubjectKeys, catalog: Catalog
) -> None:
    spellings = ["01234567-8", "012345678", " 01234567 - 8 "]
    found = {
        keys.subject_key(
            "return_arrival", record(catalog, "return_arrival", _documents(("DUI", s)))
        )
        for s in spellings
    }
    assert len(found) == 1


def test_the_same_person_has_the_same_key_across_event_types(
    keys: SubjectKeys, catalog: Catalog
) -> None:
    arrival = record(catalog, "return_arrival")
    referral = record(catalog, "referral")
    crossing = record(
        catalog, "border_crossing", {"payload.traveller_identity": identity()}
    )
    assert (
        keys.subject_key("return_arrival", arrival)
        == keys.subject_key("referral", referral)
        == keys.subject_key("border_crossing", crossing)
    )


def test_passports_of_different_countries_do_not_collide(
    keys: SubjectKeys, catalog: Catalog
) -> None:
    sv = keys.subject_key(
        "return_arrival",
        record(catalog, "return_arrival", _documents(("PASSPORT_SV", "A1"))),
    )
    other = keys.subject_key(
        "return_arrival",
        record(
            catalog,
            "return_arrival",
            _documents(("PASSPORT_FOREIGN", "A1"), country="GT"),
        ),
    )
    assert sv[1] == other[1] == "PASSPORT"
    assert sv[0] != other[0]


@pytest.mark.parametrize(
    ("document_type", "basis"),
    [
        ("NUI", "NUI"),
        ("CA4_NATIONAL_ID", "FOREIGN_ID"),
        ("BIRTH_CERTIFICATE", "SOURCE_LOCAL"),
    ],
)
def test_each_document_type_keys_under_its_basis(
    keys: SubjectKeys, catalog: Catalog, document_type: str, basis: str
) -> None:
    datum = record(catalog, "return_arrival", _documents((document_type, "X-1")))
    assert keys.subject_key("return_arrival", datum)[1] == basis


def test_a_record_without_a_usable_document_has_no_key(
    keys: SubjectKeys, catalog: Catalog
) -> None:
    assert keys.subject_key(
        "return_arrival",
        record(catalog, "return_arrival", {"payload.person_identity": None}),
    ) == (None, "NONE")
    assert keys.subject_key(
        "return_arrival",
        record(catalog, "return_arrival", _documents(("NONE", "1"), ("DUI", "--"))),
    ) == (None, "NONE")


def test_a_household_is_keyed_by_its_head(keys: SubjectKeys, catalog: Catalog) -> None:
    child = {
        "member_key": "m-2",
        "relationship_to_head": "CHILD",
        "profile": profile(minor=True),
        "identity": identity("NUI", "99999999"),
        "protection_flags": [],
    }
    head = {
        "member_key": "m-1",
        "relationship_to_head": "HEAD",
        "profile": profile(),
        "identity": identity("DUI", "01234567-8"),
        "protection_flags": [],
    }
    datum = record(
        catalog, "displacement_registration", {"payload.members": [child, head]}
    )
    arrival = record(catalog, "return_arrival")
    assert keys.subject_key("displacement_registration", datum) == keys.subject_key(
        "return_arrival", arrival
    )
    headless = record(catalog, "displacement_registration", {"payload.members": [child]})
    assert keys.subject_key("displacement_registration", headless)[1] == "NUI"


def test_subject_keys_depend_on_the_hub_key(keys: SubjectKeys, catalog: Catalog) -> None:
    datum = record(catalog, "return_arrival")
    other = SubjectKeys(bytes(32))
    assert keys.subject_key("return_arrival", datum) != other.subject_key(
        "return_arrival", datum
    )


def test_re_keyed_keys_differ_per_recipient_and_are_stable(keys: SubjectKeys) -> None:
    key = "k1:" + "a" * 52
    minsal, mtps = keys.rekey("minsal", key), keys.rekey("mtps", key)
    assert minsal != mtps
    assert minsal.startswith("r1:")
    assert minsal != key
    assert SubjectKeys(TEST_HUB_KEY).rekey("minsal", key) == minsal


def test_a_short_hub_key_is_refused() -> None:
    with pytest.raises(KeyMaterialError, match="at least 32"):
        SubjectKeys(b"short")
    assert "hidden" in repr(SubjectKeys(TEST_HUB_KEY))


def test_the_hub_key_may_be_hex_or_base64(tmp_path: Path) -> None:
    hub = HubSettings(state_dir=tmp_path)
    as_hex = HubKeySettings(hub_key=SecretStr(TEST_HUB_KEY.hex()), hub=hub)
    as_b64 = HubKeySettings(
        hub_key=SecretStr(base64.b64encode(TEST_HUB_KEY).decode()), hub=hub
    )
    assert load_hub_key(as_hex) == load_hub_key(as_b64) == TEST_HUB_KEY
    assert not (tmp_path / "keys").exists()


@pytest.mark.parametrize(
    ("text", "message"), [("abc", "neither hex nor base64"), ("00" * 8, "has 8 bytes")]
)
def test_a_malformed_hub_key_is_refused_without_echoing_it(
    tmp_path: Path, text: str, message: str
) -> None:
    settings = HubKeySettings(
        hub_key=SecretStr(text), hub=HubSettings(state_dir=tmp_path)
    )
    with pytest.raises(KeyMaterialError, match=message) as caught:
        load_hub_key(settings)
    assert text not in str(caught.value)


def test_the_hub_key_may_come_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "hub.key"
    path.write_text(TEST_HUB_KEY.hex() + "\n")
    settings = HubKeySettings(hub_key_file=path, hub=HubSettings(state_dir=tmp_path))
    assert load_hub_key(settings) == TEST_HUB_KEY
    missing = HubKeySettings(
        hub_key_file=tmp_path / "nope", hub=HubSettings(state_dir=tmp_path)
    )
    with pytest.raises(KeyMaterialError, match="cannot read the hub key file"):
        load_hub_key(missing)


def test_the_hub_key_is_read_from_the_environment(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUENTE_HUB_KEY", TEST_HUB_KEY.hex())
    monkeypatch.setenv("PUENTE_STATE_DIR", str(tmp_path))
    assert load_hub_key(HubKeySettings()) == TEST_HUB_KEY


def test_a_development_key_is_generated_once_with_owner_only_access(
    tmp_path: Path,
) -> None:
    settings = HubKeySettings(hub=HubSettings(state_dir=tmp_path))
    first = load_hub_key(settings)
    path = tmp_path / "keys" / "hub.key"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert len(first) == 32
    assert load_hub_key(settings) == first
    assert subject_keys(settings).rekey("minsal", "k1:x") == SubjectKeys(first).rekey(
        "minsal", "k1:x"
    )
    assert [p.name for p in path.parent.iterdir()] == ["hub.key"]


@given(st.text(max_size=40))
def test_document_numbers_keep_exactly_their_ascii_letters_and_digits(text: str) -> None:
    upper = unicodedata.normalize("NFKC", text).upper()
    expected = "".join(ch for ch in upper if ch.isascii() and ch.isalnum())
    assert normalise_number(text) == expected


def test_subject_keys_are_the_documented_hmac() -> None:
    key = bytes(range(32))
    datum = {"payload": {"person_identity": {"documents": [
        {"document_type": "DUI", "document_number": "01234567-8", "issuing_country": "SV"}
    ]}}}  # fmt: skip
    digest = hmac.new(key, b"DUI:012345678", hashlib.sha256).digest()
    expected = "k1:" + base64.b32encode(digest).decode().rstrip("=").lower()
    assert SubjectKeys(key).subject_key("return_arrival", datum) == (expected, "DUI")
