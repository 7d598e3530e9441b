"""Per-institution bearer credentials with scopes and expiry; only hashes are stored.

A token reads ``pte_<institution>_<64 hex digits>`` (32 random bytes), so an operator
can tell whose it is at a glance. The gateway checks a presented token by hashing it
and comparing with `hmac.compare_digest` against that institution's live hashes.
Each credential carries its scopes (``publish``, ``read``), an expiry and the time
it was last used (kept in memory and written at most once per ``last_use_every_s``,
so a request costs no disk write).
Tokens created or revoked by the CLI while the gateway runs take effect at the next
request: SQLite's ``data_version`` tells the gateway's connection that another one
committed, and the cache is reloaded.

Stores written before scopes and expiry existed are migrated when opened: their
credentials get both scopes and expire ``default_expiry_days`` after the migration.
"""

from __future__ import annotations

import enum
import hashlib
import hmac
import re
import secrets
import sqlite3
import time
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Final

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
# Columns added by schema version 2, with what existing rows get.
_V2_COLUMNS: Final = (
    ("scopes", "TEXT NOT NULL DEFAULT 'publish read'"),
    ("expires_at", "TEXT"),
    ("last_used_at", "TEXT"),
)
_VERSION: Final = 2
_COLUMNS: Final = (
    "id, institution, created_at, revoked_at, scopes, expires_at, last_used_at"
)


class Scope(enum.StrEnum):
    """What a credential may do."""

    PUBLISH = "publish"
    READ = "read"


ALL_SCOPES: Final = frozenset(Scope)
_SCOPE_NAMES: Final = frozenset(s.value for s in Scope)


class TokenError(PuenteError):
    """A credential operation failed."""


class TokenNotFoundError(TokenError):
    """No credential has the given id."""


class TokenRefusedError(TokenError):
    """A presented token is unknown, revoked or expired (the message says which)."""


@dataclass(frozen=True, slots=True)
class Principal:
    """Who a live token speaks for, and what it may do."""

    institution: str
    token_id: str
    scopes: frozenset[Scope]


@dataclass(frozen=True, slots=True)
class TokenInfo:
    """What may be shown about a credential: never the token nor its hash."""

    id: str
    institution: str
    created_at: datetime
    revoked_at: datetime | None
    scopes: frozenset[Scope] = ALL_SCOPES
    expires_at: datetime | None = None
    last_used_at: datetime | None = None

    @property
    def expired(self) -> bool:
        """Whether the expiry has passed (a credential without one counts as expired)."""
        return self.expires_at is None or self.expires_at <= datetime.now(UTC)

    @property
    def active(self) -> bool:
        """Whether the credential is still accepted."""
        return self.revoked_at is None and not self.expired

    @property
    def state(self) -> str:
        """``active``, ``revoked`` or ``expired``."""
        if self.revoked_at is not None:
            return "revoked"
        return "expired" if self.expired else "active"


@dataclass(frozen=True, slots=True)
class _Live:
    hash: bytes
    id: str
    scopes: frozenset[Scope]
    expires_at: float  # epoch seconds; 0 when the row has none


def digest(token: str) -> bytes:
    """SHA-256 of the token text."""
    return hashlib.sha256(token.encode("utf-8")).digest()


def institution_of(token: str) -> str | None:
    """The institution a well-formed token names, or None for anything else."""
    match = _TOKEN.fullmatch(token)
    return match[1] if match else None


def parse_scopes(values: Iterable[str]) -> frozenset[Scope]:
    """Scope names as scopes; a `TokenError` naming the valid ones otherwise."""
    try:
        scopes = frozenset(Scope(v.strip().lower()) for v in values)
    except ValueError as e:
        valid = ", ".join(s.value for s in Scope)
        raise TokenError(f"unknown scope; valid scopes: {valid}") from e
    if not scopes:
        raise TokenError("a credential needs at least one scope")
    return scopes


class TokenStore:
    """The credential table in ``<state_dir>/gateway/tokens.sqlite``."""

    def __init__(
        self,
        path: Path,
        *,
        default_expiry_days: int = 90,
        last_use_every_s: float = 60.0,
    ) -> None:
        self.default_expiry_days = default_expiry_days
        self._last_use_every = last_use_every_s
        try:
            path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
            # Used from one thread at a time: the CLI, or the gateway's event loop.
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA busy_timeout=5000")
            self._db.executescript(_SCHEMA)
            self._migrate()
        except sqlite3.Error as e:
            raise ConfigurationError(f"cannot open the token store {path}: {e}") from e
        self._version = -1
        self._live: dict[str, list[_Live]] = {}
        self._used: dict[str, float] = {}
        self._flushed_at = time.monotonic()

    def _migrate(self) -> None:
        """Add scopes, expiry and last use to a store of schema version 1."""
        if self._db.execute("PRAGMA user_version").fetchone()[0] >= _VERSION:
            return
        expiry = _now() + timedelta(days=self.default_expiry_days)
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            # Checked again under the write lock: another process may have migrated.
            present = {row[1] for row in self._db.execute("PRAGMA table_info(tokens)")}
            for name, definition in _V2_COLUMNS:
                if name not in present:
                    self._db.execute(f"ALTER TABLE tokens ADD COLUMN {name} {definition}")
            self._db.execute(
                "UPDATE tokens SET expires_at = ? WHERE expires_at IS NULL",
                (expiry.isoformat(),),
            )
            self._db.execute(f"PRAGMA user_version = {_VERSION}")

    def close(self) -> None:
        """Write pending last-use times and close the database connection."""
        try:
            self.flush_last_use()
        finally:
            self._db.close()

    def create(
        self,
        institution: str,
        scopes: Iterable[Scope] = ALL_SCOPES,
        expires_in_days: int | None = None,
    ) -> tuple[TokenInfo, str]:
        """Make a new credential for ``institution``; the token is returned only here."""
        check_institution_id(institution)
        granted = frozenset(scopes)
        if not granted:
            raise TokenError("a credential needs at least one scope")
        days = self.default_expiry_days if expires_in_days is None else expires_in_days
        if days < 1:
            raise TokenError("a credential must live at least one day")
        token = f"{PREFIX}{institution}_{secrets.token_hex(32)}"
        created = _now()
        info = TokenInfo(
            secrets.token_hex(4),
            institution,
            created,
            None,
            granted,
            created + timedelta(days=days),
        )
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.execute(
                "INSERT INTO tokens (id, institution, hash, created_at, scopes,"
                " expires_at) VALUES (?,?,?,?,?,?)",
                (
                    info.id,
                    institution,
                    digest(token),
                    created.isoformat(),
                    _scope_text(granted),
                    _iso(info.expires_at),
                ),
            )
        self._version = -1  # data_version ignores this connection's own commits
        return info, token

    def list(self, institution: str | None = None) -> list[TokenInfo]:
        """Every credential (optionally of one institution), oldest first."""
        self.flush_last_use()
        query = f"SELECT {_COLUMNS} FROM tokens"  # noqa: S608 - fixed column list
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
                f"SELECT {_COLUMNS} FROM tokens WHERE id = ?",  # noqa: S608 - fixed
                (token_id,),
            ).fetchone()
        self._version = -1
        if row is None:
            raise TokenNotFoundError(f"no credential with id {token_id[:16]!r}")
        return _info(row)

    def check(self, token: str) -> Principal:
        """The principal of a live token; `TokenRefusedError` says why it is not."""
        institution = institution_of(token)
        if institution is None:
            raise TokenRefusedError("the bearer token is not valid or was revoked")
        self._refresh()
        presented = digest(token)
        found: _Live | None = None
        for live in self._live.get(institution, ()):
            if hmac.compare_digest(live.hash, presented):
                found = live
        if found is None:
            raise TokenRefusedError("the bearer token is not valid or was revoked")
        now = time.time()
        if found.expires_at <= now:
            raise TokenRefusedError("the bearer token has expired; ask for a new one")
        self._note_use(found.id, now)
        return Principal(institution, found.id, found.scopes)

    def authenticate(self, token: str) -> str | None:
        """The institution a presented token belongs to, or None if it is not live."""
        try:
            return self.check(token).institution
        except TokenRefusedError:
            return None

    def flush_last_use(self) -> None:
        """Write the last-use times noted since the previous write."""
        used, self._used = self._used, {}
        self._flushed_at = time.monotonic()
        if not used:
            return
        with self._db:
            self._db.execute("BEGIN IMMEDIATE")
            self._db.executemany(
                "UPDATE tokens SET last_used_at = ? WHERE id = ?",
                [(_iso(_at(t)), i) for i, t in used.items()],
            )

    def _note_use(self, token_id: str, now: float) -> None:
        self._used[token_id] = now
        if time.monotonic() - self._flushed_at >= self._last_use_every:
            self.flush_last_use()

    def _refresh(self) -> None:
        version = int(self._db.execute("PRAGMA data_version").fetchone()[0])
        if version == self._version:
            return
        live: dict[str, list[_Live]] = {}
        rows = self._db.execute(
            "SELECT institution, hash, id, scopes, expires_at FROM tokens"
            " WHERE revoked_at IS NULL"
        )
        for institution, hashed, token_id, scopes, expires_at in rows:
            expiry = datetime.fromisoformat(expires_at).timestamp() if expires_at else 0
            live.setdefault(institution, []).append(
                _Live(bytes(hashed), token_id, _scopes_of(scopes), expiry)
            )
        self._live, self._version = live, version


def _now() -> datetime:
    return datetime.now(UTC).replace(microsecond=0)


def _at(epoch: float) -> datetime:
    return datetime.fromtimestamp(int(epoch), UTC)


def _iso(moment: datetime | None) -> str | None:
    return moment.isoformat() if moment else None


def _scope_text(scopes: Iterable[Scope]) -> str:
    return " ".join(sorted(s.value for s in scopes))


def _scopes_of(text: str | None) -> frozenset[Scope]:
    # Unknown words are ignored: a store written by a newer gateway grants no more.
    return frozenset(Scope(w) for w in (text or "").split() if w in _SCOPE_NAMES)


def _parsed(text: Any) -> datetime | None:
    return datetime.fromisoformat(text) if text else None


def _info(row: tuple[Any, ...]) -> TokenInfo:
    token_id, institution, created, revoked, scopes, expires, used = row
    return TokenInfo(
        token_id,
        institution,
        datetime.fromisoformat(created),
        _parsed(revoked),
        _scopes_of(scopes),
        _parsed(expires),
        _parsed(used),
    )
