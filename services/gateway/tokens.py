"""Per-institution bearer credentials: only SHA-256 hashes are stored.

A token reads ``pte_<institution>_<64 hex digits>`` (32 random bytes), so an operator
can tell whose it is at a glance. The gateway checks a presented token by hashing it
and comparing with `hmac.compare_digest` against that institution's live hashes.
Tokens created or revoked by the CLI while the gateway runs take effect at the next
request: SQLite's ``data_version`` tells the gateway's connection that another one
committed, and the cache is reloaded.
"""

from __future__ import annotations

import hashlib
import hmac
import re
import secrets
import sqlite3
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Final

from services.contracts.errors import ConfigurationError, PuenteError
from services.contracts.ids import check_institution_id

PREFIX: Final = "pte_"
_TOKEN: Final = re.compile(r"pte_([a-z][a-z0-9_]*)_([0-9a-f]{64})")
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS tokens (
    id TEXT PRIMARY KEY,
    institution TEXT NOT NULL,
    hash BLOB NOT NULL UNIQUE,
    created_at TEXT NOT NULL,
    revoked_at TEXT
);
"""


class TokenNotFoundError(PuenteError):
    """No credential has the given id."""


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a credential: never the token nor its hash."""

    id: str
    institution: str
    created_at: datetime
    revoked_at: datetime | None

    @property
    def active(self) -> bool:
        """Whether the credential is still accepted."""
        return self.revoked_at is None


def digest(token: str) -> bytes:
    """SHA-256 of the token text."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def institution_of(token: str) -> str | None:
    """The institution a well-formed token names, or None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match[1] if match else None


class TokenStore:
    """The credential table in ``<state_dir>/gateway/tokens.sqlite``."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Used from one thread at a time: the CLI, or the gateway's event loop.
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
        except sqlite3.Error as e:
            raise ConfigurationError(f"cannot open the token store {path}: {e}") from e
        self._version = -1
        self._live: dict[str, list[bytes]] = {}

    def close(self) -> None:
        """Close the database connection."""
        self._db.close()

    def create(self, institution: str) -> tuple[TokenInfo, str]:
        """Make a new credential for ``institution``; the token is returned only here."""
        check_institution_id(institution)
        token = f"{PREFIX}{institution}_{secrets.token_hex(32)}"
        info = TokenInfo(secrets.token_hex(4), institution, _now(), None)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO tokens (id, institution, hash, created_at) VALUES (?,?,?,?)",
                (info.id, institution, digest(token), info.created_at.isoformat()),
            )
        self._version = -1  # data_version ignores this connection's own commits
        return info, token

    def list(self, institution: str | None = None) -> list[TokenInfo]:
        """Every credential (optionally of one institution), oldest first."""
        query = "SELECT id, institution, created_at, revoked_at FROM tokens"
        args: tuple[str, ...] = ()
        if institution is not None:
            query += " WHERE institution = ?"
            args = (institution,)
        rows = self._db.execute(query + " ORDER BY created_at, id", args).fetchall()
        return [_info(row) for row in rows]

    def revoke(self, token_id: str) -> TokenInfo:
        """Revoke a credential by id (idempotent); return its new state."""
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "UPDATE tokens SET revoked_at = ? WHERE id = ? AND revoked_at IS NULL",
                (_now().isoformat(), token_id),
            )
            row = self._db.execute(
                "SELECT id, institution, created_at, revoked_at FROM tokens WHERE id = ?",
                (token_id,),
            ).fetchone()
        self._version = -1
        if row is None:
            raise TokenNotFoundError(f"no credential with id {token_id[:16]!r}")
        return _info(row)

    def authenticate(self, token: str) -> str | None:
        """The institution a presented token belongs to, or None if it is not live."""
        institution = institution_of(token)
        if institution is None:
            return None
        self._refresh()
        presented = digest(token)
        matched = False
        for stored in self._live.get(institution, ()):
            matched |= hmac.compare_digest(stored, presented)
        return institution if matched else None

    def _refresh(self) -> None:
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return
        live: dict[str, list[bytes]] = {}
        rows = self._db.execute(
            "SELECT institution, hash FROM tokens WHERE revoked_at IS NULL"
        )
        for institution, hashed in rows:
            live.setdefault(institution, []).append(bytes(hashed))
        self._live, self._version = live, version


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _info(row: tuple[str, str, str, str | None]) -> TokenInfo:
    return TokenInfo(
        row[0],
        row[1],
        datetime.fromisoformat(row[2]),
        datetime.fromisoformat(row[3]) if row[3] else None,
    )
