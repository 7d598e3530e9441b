"""SCRAM users of the hub from a folder of password files (pure but for reading it).

The folder holds one file per principal, named by its user name and holding its
password: ``puente-router``, ``puente-gateway``, ``puente-audit``, an institution id,
or ``puente-gateway-reader.<id>``. It is the compose stack's
``PUENTE_SECRETS_DIR/kafka-users`` folder, and ``puente acl apply --users-dir``
creates or updates the SCRAM-SHA-512 credential of every file in it.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Final

from services.acl.plan import ServicePrincipals
from services.contracts.errors import ConfigurationError

MIN_PASSWORD: Final = 16
SUPER_USER: Final = "admin"


class UsersDirError(ConfigurationError):
    """The users folder cannot be read, or a file in it is no hub principal's."""


def known_users(services: ServicePrincipals, institutions: Iterable[str]) -> set[str]:
    """Every user name the plan may grant something to.

    The services, the institutions, and the gateway's reader of each institution.
    """
    institutions = list(institutions)
    return {
        *services.names(),
        *institutions,
        *(services.gateway_reader(i) for i in institutions),
    }


def read_users(folder: Path, known: set[str]) -> dict[str, str]:
    """User name -> password of every file in ``folder``, sorted by name.

    A file must be named after a known user (a misspelt name would leave that
    principal without a credential) and hold a password of at least 16 characters
    on one line; hidden files are ignored.
    """
    try:
        files = sorted(p for p in folder.iterdir() if not p.name.startswith("."))
    except OSError as e:
        raise UsersDirError(f"cannot read the users folder {folder}: {e.strerror}") from e
    users: dict[str, str] = {}
    for path in files:
        if path.name == SUPER_USER:
            raise UsersDirError(
                f"{path}: the admin super-user's credential is set when the storage is "
                "formatted, not by apply"
            )
        if path.name not in known:
            raise UsersDirError(
                f"{path}: {path.name!r} is no principal of the plan (a service, an "
                "institution id, or puente-gateway-reader.<id>)"
            )
        users[path.name] = _password(path)
    return users


def _password(path: Path) -> str:
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise UsersDirError(f"cannot read {path}: {e}") from e
    password = text.rstrip("\r\n")
    if "\n" in password or not password.strip() or password != password.strip():
        raise UsersDirError(
            f"{path}: the password must be one line with no spaces around"
        )
    if len(password) < MIN_PASSWORD:
        raise UsersDirError(
            f"{path}: the password has fewer than {MIN_PASSWORD} characters "
            "(openssl rand -hex 32)"
        )
    return password


def changes(
    users: Mapping[str, str], existing: Iterable[str]
) -> tuple[list[str], list[str]]:
    """The users of ``users`` the broker lacks, and the ones it has (both sorted)."""
    have = set(existing)
    return sorted(set(users) - have), sorted(set(users) & have)
