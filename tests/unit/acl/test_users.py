"""The SCRAM users folder: one password file per hub principal, nothing else."""

from __future__ import annotations

from pathlib import Path

import pytest

from services.acl.plan import ServicePrincipals
from services.acl.users import UsersDirError, changes, known_users, read_users

KNOWN_USERS = known_users(ServicePrincipals(), ["dgme", "rree"])
PASSWORD = "0123456789abcdef0123"


def folder_with(tmp_path: Path, files: dict[str, str]) -> Path:
    folder = tmp_path / "kafka-users"
    folder.mkdir()
    for name, text in files.items():
        (folder / name).write_text(text, encoding="utf-8")
    return folder


def test_the_known_users_are_the_services_the_institutions_and_their_readers() -> None:
    users = known_users(ServicePrincipals(), ["dgme", "rree"])
    assert users == {
        "puente-router",
        "puente-gateway",
        "puente-audit",
        "dgme",
        "rree",
        "puente-gateway-reader.dgme",
        "puente-gateway-reader.rree",
    }


def test_every_file_becomes_a_user_with_its_password_without_the_newline(
    tmp_path: Path,
) -> None:
    folder = folder_with(
        tmp_path,
        {"dgme": PASSWORD + "\n", "puente-router": PASSWORD[::-1], ".keep": ""},
    )
    assert read_users(folder, KNOWN_USERS) == {
        "dgme": PASSWORD,
        "puente-router": PASSWORD[::-1],
    }


@pytest.mark.parametrize(
    ("name", "text", "message"),
    [
        ("dgmee", PASSWORD, "no principal of the plan"),
        ("admin", PASSWORD, "admin super-user"),
        ("dgme", "short\n", "fewer than 16"),
        ("dgme", f"{PASSWORD}\nsecond line\n", "one line"),
        ("dgme", f" {PASSWORD}", "one line"),
        ("dgme", "\n", "one line"),
    ],
)
def test_a_file_that_is_no_users_password_is_refused_by_name(
    tmp_path: Path, name: str, text: str, message: str
) -> None:
    folder = folder_with(tmp_path, {name: text})
    with pytest.raises(UsersDirError, match=message) as raised:
        read_users(folder, KNOWN_USERS)
    assert str(folder / name) in str(raised.value)
    assert PASSWORD not in str(raised.value)


def test_a_missing_folder_is_one_clear_error(tmp_path: Path) -> None:
    with pytest.raises(UsersDirError, match="cannot read the users folder"):
        read_users(tmp_path / "nowhere", KNOWN_USERS)


def test_changes_tell_new_users_from_existing_ones() -> None:
    users = {"dgme": PASSWORD, "rree": PASSWORD, "puente-audit": PASSWORD}
    assert changes(users, ["rree", "someone-else"]) == (
        ["dgme", "puente-audit"],
        ["rree"],
    )
