"""Bearer credentials of the audit API, with a role; only SHA-256 hashes are stored.

Roles:

- ``oversight``: the data protection officer or the supervisory authority; may ask
  every question of the ledger;
- ``institution``: one institution, which may ask only about disclosures *to
  itself*.

A token reads ``pta_<64 hex digits>`` (32 random bytes) and is shown once, when
created. The store is one SQLite file (``<state_dir>/audit/credentials.sqlite``,
mode 0600) that the CLI writes and the audit API reads on every request, so a
revocation holds from the next request on.
"""

from __future__ import annotations

import enum
import hashlib
import os
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Final

from services.contracts.errors import PuenteError
from services.contracts.ids import check_institution_id
from services.contracts.natural import format_timestamp

PREFIX: Final = "pta_"
_TOKEN: Final = re.compile(r"pta_[0-9a-f]{64}")
_FILE_MODE: Final = 0o600
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS credentials (
    id TEXT PRIMARY KEY,
    role TEXT NOT NULL,
    institution TEXT,
    label TEXT NOT NULL DEFAULT '',
    hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""
_COLUMNS: Final = "id, role, institution, label, created_at, revoked_at"


class Role(enum.StrEnum):
    """What a credential may ask."""

    OVERSIGHT = "oversight"
    INSTITUTION = "institution"


class CredentialError(PuenteError):
    """A credential operation failed (the message says why)."""


class CredentialNotFoundError(CredentialError):
    """No credential has the given id."""


@dataclass(frozen=True, slots=True)
class Credential:
    """What may be shown about a credential: never the token nor its hash."""

    id: str
    role: Role
    institution: str | None
    label: str
    created_at: str
    revoked_at: str | None

    @property
    def active(self) -> bool:
        """Whether the credential is still accepted."""
        return self.revoked_at is None


def digest(token: str) -> bytes:
    """SHA-256 of the token text (what the store keeps)."""
    return hashlib.sha256(token.encode("utf-8")).digest()


class CredentialStore:
    """The credential table of the audit API."""

    def __init__(self, path: Path) -> None:
        self.path = path
        try:
            path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
            os.close(os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE))
            self._db = sqlite3.connect(path, isolation_level=None)
            self._db.execute("PRAGMA busy_timeout = 5000")
            self._db.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as e:
            raise CredentialError(f"cannot open credential store {path}: {e}") from e

    def close(self) -> None:
        """Close the database."""
        self._db.close()

    def create(
        self, role: Role, institution: str | None = None, label: str = ""
    ) -> tuple[Credential, str]:
        """A new credential and its token (the only time the token is shown)."""
        if role is Role.INSTITUTION:
            if institution is None:
                raise CredentialError("an institution credential needs --institution")
            check_institution_id(institution)
        elif institution is not None:
            raise CredentialError("an oversight credential is not for one institution")
        token = PREFIX + secrets.token_hex(32)
        credential = Credential(
            secrets.token_hex(8), role, institution, label,
            format_timestamp(datetime.now(UTC)), None,
        )  # fmt: skip
        self._write(
            "INSERT INTO credentials (id, role, institution, label, hash, created_at) "
            "VALUES (?, ?, ?, ?, ?, ?)",
            (
                credential.id, role.value, institution, label, digest(token),
                credential.created_at,
            ),
        )  # fmt: skip
        return credential, token

    def revoke(self, credential_id: str) -> Credential:
        """Revoke a credential; revoking twice keeps the first time."""
        now = format_timestamp(datetime.now(UTC))
        self._write(
            "UPDATE credentials SET revoked_at = coalesce(revoked_at, ?) WHERE id = ?",
            (now, credential_id),
        )
        sql = f"SELECT {_COLUMNS} FROM credentials WHERE id = ?"  # noqa: S608 - fixed columns
        found = self._select(sql, (credential_id,))
        if not found:
            raise CredentialNotFoundError(f"no audit credential has id {credential_id}")
        return _credential(found[0])

    def all(self) -> list[Credential]:
        """Every credential, oldest first."""
        rows = self._select(f"SELECT {_COLUMNS} FROM credentials ORDER BY created_at, id")  # noqa: S608 - fixed column list
        return [_credential(r) for r in rows]

    def check(self, token: str) -> Credential | None:
        """The live credential ``token`` speaks for, or None."""
        if not _TOKEN.fullmatch(token):
            return None
        rows = self._select(
            f"SELECT {_COLUMNS} FROM credentials WHERE hash = ? AND revoked_at IS NULL",  # noqa: S608 - fixed column list
            (digest(token),),
        )
        return _credential(rows[0]) if rows else None

    def _write(self, sql: str, args: tuple[Any, ...]) -> None:
        try:
            self._db.execute(sql, args)
        except sqlite3.Error as e:
            raise CredentialError(
                f"cannot write credential store {self.path}: {e}"
            ) from e

    def _select(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        try:
            return list(self._db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise CredentialError(f"cannot read credential store {self.path}: {e}") from e


def _credential(row: tuple[Any, ...]) -> Credential:
    return Credential(str(row[0]), Role(row[1]), row[2], str(row[3]), str(row[4]), row[5])
