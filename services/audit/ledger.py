"""The ledger file: one SQLite database, appended to in one transaction per batch.

Tables: ``entries`` (the chain: seq, audit_id, canonical bytes, prev hash, hash and
query columns derived from the bytes), ``checkpoints`` (signed heads),
``signing_keys`` (public keys that signed them), ``positions`` (next offset per
consumed topic partition, written in the same transaction as the entries, which
is what makes ingestion exactly-once), ``skipped`` (records on the audit topic that
were not admissible entries: their offset, reason and SHA-256, never their bytes)
``key_rotations`` (a new signing key vouched for by the previous one),
``queries`` (who asked the audit API what, when: the query log) and ``meta`` (the
ledger id). Triggers refuse updates and deletes of entries, checkpoints, rotations
and the query log; the chain, the signatures and the witness detect whoever
removes the triggers. The file is created mode 0600 in a 0700 folder.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import sqlite3
import uuid
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import IO, Any, Final

from services.audit.chain import GENESIS, Columns, Prepared, link
from services.audit.checkpoints import Checkpoint
from services.audit.rotation import Rotation
from services.contracts.errors import PuenteError
from services.contracts.natural import format_timestamp

FORMAT: Final = "puente-audit-ledger/1"
_FILE_MODE: Final = 0o600
Position = tuple[str, int]

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS meta (name TEXT PRIMARY KEY, value TEXT NOT NULL);
CREATE TABLE IF NOT EXISTS entries (
    seq INTEGER PRIMARY KEY,
    audit_id TEXT NOT NULL UNIQUE,
    entry BLOB NOT NULL,
    prev_hash BLOB NOT NULL,
    hash BLOB NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    recipient TEXT NOT NULL,
    decision TEXT NOT NULL,
    view TEXT NOT NULL,
    subject_key TEXT,
    decided_at TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS entries_event ON entries (event_id);
CREATE INDEX IF NOT EXISTS entries_recipient ON entries (recipient, decided_at);
CREATE INDEX IF NOT EXISTS entries_subject ON entries (subject_key)
    WHERE subject_key IS NOT NULL;
CREATE TABLE IF NOT EXISTS checkpoints (
    seq INTEGER PRIMARY KEY,
    head_hash BLOB NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    signature BLOB NOT NULL,
    published INTEGER NOT NULL DEFAULT 0
);
CREATE TABLE IF NOT EXISTS signing_keys (
    key_id TEXT PRIMARY KEY,
    public_key BLOB NOT NULL,
    added_at TEXT NOT NULL
);
CREATE TABLE IF NOT EXISTS positions (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    next_offset INTEGER NOT NULL,
    PRIMARY KEY (topic, partition)
);
CREATE TABLE IF NOT EXISTS skipped (
    topic TEXT NOT NULL,
    partition INTEGER NOT NULL,
    "offset" INTEGER NOT NULL,
    reason TEXT NOT NULL,
    value_sha256 TEXT,
    skipped_at TEXT NOT NULL,
    PRIMARY KEY (topic, partition, "offset")
);
CREATE TABLE IF NOT EXISTS key_rotations (
    seq INTEGER NOT NULL,
    signed_at TEXT NOT NULL,
    key_id TEXT NOT NULL,
    public_key BLOB NOT NULL,
    next_key_id TEXT NOT NULL PRIMARY KEY,
    next_public_key BLOB NOT NULL,
    signature BLOB NOT NULL
);
CREATE TABLE IF NOT EXISTS queries (
    id INTEGER PRIMARY KEY,
    asked_at TEXT NOT NULL,
    credential_id TEXT NOT NULL,
    role TEXT NOT NULL,
    institution TEXT,
    query TEXT NOT NULL,
    query_key TEXT,
    outcome INTEGER NOT NULL
);
CREATE TRIGGER IF NOT EXISTS key_rotations_append_only_update
    BEFORE UPDATE ON key_rotations
    BEGIN SELECT RAISE(ABORT, 'key rotations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS key_rotations_append_only_delete
    BEFORE DELETE ON key_rotations
    BEGIN SELECT RAISE(ABORT, 'key rotations are append-only'); END;
CREATE TRIGGER IF NOT EXISTS queries_append_only_update BEFORE UPDATE ON queries
    BEGIN SELECT RAISE(ABORT, 'the query log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS queries_append_only_delete BEFORE DELETE ON queries
    BEGIN SELECT RAISE(ABORT, 'the query log is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_update BEFORE UPDATE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS entries_append_only_delete BEFORE DELETE ON entries
    BEGIN SELECT RAISE(ABORT, 'the ledger is append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_update
    BEFORE UPDATE OF seq, head_hash, signed_at, key_id, signature ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
CREATE TRIGGER IF NOT EXISTS checkpoints_append_only_delete BEFORE DELETE ON checkpoints
    BEGIN SELECT RAISE(ABORT, 'checkpoints are append-only'); END;
"""
_CHECKPOINT_SELECT: Final = (
    "SELECT c.seq, c.head_hash, c.signed_at, c.key_id, c.signature, "
    "coalesce(k.public_key, x'') FROM checkpoints c "
    "LEFT JOIN signing_keys k ON k.key_id = c.key_id "
)
_CHECKPOINTS: Final = _CHECKPOINT_SELECT + "ORDER BY c.seq"
_UNPUBLISHED: Final = _CHECKPOINT_SELECT + "WHERE c.published = 0 ORDER BY c.seq"
_ROW_COLUMNS: Final = (
    "seq, audit_id, entry, prev_hash, hash, event_id, event_type, recipient, "
    "decision, view, subject_key, decided_at"
)


class LedgerError(PuenteError):
    """The ledger file cannot be opened, read or written."""


class LedgerBusyError(LedgerError):
    """Another process is already appending to this ledger."""

    retriable = True


@dataclass(frozen=True, slots=True)
class Head:
    """The last entry's sequence number and chain hash (0 and zeros when empty)."""

    seq: int
    hash: bytes


@dataclass(frozen=True, slots=True)
class Skipped:
    """A record on the audit topic that is not an admissible entry."""

    topic: str
    partition: int
    offset: int
    reason: str
    value_sha256: str | None


@dataclass(frozen=True, slots=True)
class AppendResult:
    """What one batch did to the ledger."""

    appended: int
    duplicates: int
    head: Head


@dataclass(frozen=True, slots=True)
class Row:
    """One stored entry as it is in the file (possibly tampered with)."""

    seq: int
    audit_id: str
    entry: bytes
    prev_hash: bytes
    hash: bytes
    columns: Columns


class Ledger:
    """One ledger file; open it with `open_writer` or `open_reader`."""

    def __init__(
        self, db: sqlite3.Connection, path: Path, lock: IO[bytes] | None
    ) -> None:
        self.db = db
        self.path = path
        self._lock = lock

    @classmethod
    def open_writer(cls, path: Path) -> Ledger:
        """Open (creating if needed) for appending; only one writer at a time."""
        lock = _lock(path)
        try:
            _create_private(path)
            db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
            db.execute("PRAGMA journal_mode=WAL")
            # FULL: a committed batch (entries + positions) survives a power cut too.
            db.execute("PRAGMA synchronous=FULL")
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT OR IGNORE INTO meta VALUES ('format', ?), ('ledger_id', ?)",
                (FORMAT, str(uuid.uuid4())),
            )
        except sqlite3.Error as e:
            lock.close()
            raise LedgerError(f"cannot open ledger {path}: {e}") from e
        return cls(db, path, lock)

    @classmethod
    def open_reader(cls, path: Path) -> Ledger:
        """Open an existing ledger read-only (safe beside a running writer)."""
        if not path.is_file():
            raise LedgerError(f"no ledger at {path}")
        try:
            db = sqlite3.connect(
                f"{path.resolve().as_uri()}?mode=ro", uri=True, check_same_thread=False
            )
            db.execute("SELECT 1 FROM meta LIMIT 1")
        except sqlite3.Error as e:
            raise LedgerError(f"{path} is not a readable ledger: {e}") from e
        return cls(db, path, None)

    def close(self) -> None:
        """Close the database and release the writer lock."""
        self.db.close()
        if self._lock is not None:
            self._lock.close()

    @property
    def ledger_id(self) -> str:
        """The id fixed when the ledger was created."""
        row = self._one("SELECT value FROM meta WHERE name = 'ledger_id'")
        if row is None:
            raise LedgerError(f"{self.path} has no ledger id")
        return str(row[0])

    def head(self) -> Head:
        """The last entry (seq 0 and 32 zero bytes when the ledger is empty)."""
        row = self._one("SELECT seq, hash FROM entries ORDER BY seq DESC LIMIT 1")
        return Head(int(row[0]), bytes(row[1])) if row else Head(0, GENESIS)

    def count(self) -> int:
        """How many entries the ledger holds."""
        row = self._one("SELECT count(*) FROM entries")
        return int(row[0]) if row else 0

    def positions(self) -> dict[Position, int]:
        """Next offset to consume for every (topic, partition) seen so far."""
        rows = self.select("SELECT topic, partition, next_offset FROM positions")
        return {(str(t), int(p)): int(o) for t, p, o in rows}

    def append(
        self,
        entries: Sequence[Prepared],
        skipped: Sequence[Skipped],
        positions: Mapping[Position, int],
    ) -> AppendResult:
        """Append new entries, note skipped records and move positions, atomically.

        An entry whose audit_id is already in the ledger (a redelivery) is skipped.
        """
        appended = duplicates = 0
        now = format_timestamp(datetime.now(UTC))
        with self._transaction():
            head = self.head()
            for item in entries:
                if self._has(item.columns.audit_id):
                    duplicates += 1
                    continue
                head = self._insert(head, item)
                appended += 1
            self.db.executemany(
                "INSERT OR IGNORE INTO skipped VALUES (?, ?, ?, ?, ?, ?)",
                [
                    (s.topic, s.partition, s.offset, s.reason, s.value_sha256, now)
                    for s in skipped
                ],
            )
            self.db.executemany(
                "INSERT INTO positions VALUES (?, ?, ?) ON CONFLICT (topic, partition) "
                "DO UPDATE SET next_offset = excluded.next_offset",
                [(t, p, o) for (t, p), o in positions.items()],
            )
        return AppendResult(appended, duplicates, head)

    def _has(self, audit_id: str) -> bool:
        return (
            self._one("SELECT 1 FROM entries WHERE audit_id = ?", (audit_id,)) is not None
        )

    def _insert(self, head: Head, item: Prepared) -> Head:
        seq, digest = head.seq + 1, link(head.hash, item.canonical)
        c = item.columns
        self.db.execute(
            f"INSERT INTO entries ({_ROW_COLUMNS}) VALUES (?,?,?,?,?,?,?,?,?,?,?,?)",  # noqa: S608 - fixed column list
            (
                seq, c.audit_id, item.canonical, head.hash, digest, c.event_id,
                c.event_type, c.recipient, c.decision, c.view, c.subject_key,
                c.decided_at,
            ),
        )  # fmt: skip
        return Head(seq, digest)

    def add_checkpoint(self, checkpoint: Checkpoint) -> None:
        """Store a checkpoint (not yet published) and the public key that signed it."""
        now = format_timestamp(datetime.now(UTC))
        with self._transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO signing_keys VALUES (?, ?, ?)",
                (checkpoint.key_id, checkpoint.public_key, now),
            )
            self.db.execute(
                "INSERT OR IGNORE INTO checkpoints "
                "(seq, head_hash, signed_at, key_id, signature) VALUES (?, ?, ?, ?, ?)",
                (
                    checkpoint.seq, checkpoint.head, checkpoint.time,
                    checkpoint.key_id, checkpoint.signature,
                ),
            )  # fmt: skip

    def mark_published(self, seq: int) -> None:
        """Note that the checkpoint at ``seq`` reached the checkpoint topic."""
        with self._transaction():
            self.db.execute("UPDATE checkpoints SET published = 1 WHERE seq = ?", (seq,))

    def checkpoints(self, *, unpublished_only: bool = False) -> list[Checkpoint]:
        """Stored checkpoints in seq order (with the public key each names)."""
        rows = self.select(_UNPUBLISHED if unpublished_only else _CHECKPOINTS)
        ledger_id = self.ledger_id
        return [
            Checkpoint(ledger_id, int(s), bytes(h), str(t), str(k), bytes(pk), bytes(sig))
            for s, h, t, k, sig, pk in rows
        ]

    def add_rotation(self, rotation: Rotation) -> None:
        """Store a key rotation (the next key, vouched for by the previous one)."""
        with self._transaction():
            self.db.execute(
                "INSERT OR IGNORE INTO key_rotations VALUES (?, ?, ?, ?, ?, ?, ?)",
                (
                    rotation.seq, rotation.time, rotation.key_id, rotation.public_key,
                    rotation.next_key_id, rotation.next_public_key, rotation.signature,
                ),
            )  # fmt: skip

    def rotations(self) -> list[Rotation]:
        """Stored key rotations in seq order (none in a ledger older than rotations)."""
        if not self.select(
            "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'key_rotations'"
        ):
            return []
        ledger_id = self.ledger_id
        rows = self.select(
            "SELECT seq, signed_at, key_id, public_key, next_key_id, next_public_key, "
            "signature FROM key_rotations ORDER BY seq"
        )
        return [
            Rotation(
                ledger_id, int(s), str(t), str(k), bytes(p), str(n), bytes(np), bytes(g)
            )
            for s, t, k, p, n, np, g in rows
        ]

    def last_checkpoint_seq(self) -> int:
        """The seq of the newest checkpoint, 0 when there is none."""
        row = self._one("SELECT max(seq) FROM checkpoints")
        return int(row[0]) if row and row[0] is not None else 0

    def signing_keys(self) -> dict[str, bytes]:
        """key_id -> raw public key of every key that signed a checkpoint here."""
        return {
            str(k): bytes(v)
            for k, v in self.select("SELECT key_id, public_key FROM signing_keys")
        }

    def rows(self) -> Iterator[Row]:
        """Every stored entry in seq order, read lazily."""
        try:
            cursor = self.db.execute(f"SELECT {_ROW_COLUMNS} FROM entries ORDER BY seq")  # noqa: S608 - fixed column list
            for r in cursor:
                yield _row(r)
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read ledger {self.path}: {e}") from e

    def skipped_count(self) -> int:
        """How many records of the audit topic were not admissible entries."""
        row = self._one("SELECT count(*) FROM skipped")
        return int(row[0]) if row else 0

    @contextlib.contextmanager
    def _transaction(self) -> Iterator[None]:
        try:
            self.db.execute("BEGIN IMMEDIATE")
            try:
                yield
            except BaseException:
                self.db.execute("ROLLBACK")
                raise
            self.db.execute("COMMIT")
        except sqlite3.Error as e:
            # A failed COMMIT may leave the transaction open; roll it back so the
            # batch can be appended again (it is read again from the positions).
            if self.db.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    self.db.execute("ROLLBACK")
            raise LedgerError(f"cannot write ledger {self.path}: {e}") from e

    def _one(self, sql: str, args: tuple[Any, ...] = ()) -> tuple[Any, ...] | None:
        try:
            row: tuple[Any, ...] | None = self.db.execute(sql, args).fetchone()
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read ledger {self.path}: {e}") from e
        return row

    def select(self, sql: str, args: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
        """All rows of a read-only statement; sqlite errors become `LedgerError`."""
        try:
            return list(self.db.execute(sql, args).fetchall())
        except sqlite3.Error as e:
            raise LedgerError(f"cannot read ledger {self.path}: {e}") from e


def _row(r: tuple[Any, ...]) -> Row:
    columns = Columns(
        audit_id=str(r[1]),
        event_id=str(r[5]),
        event_type=str(r[6]),
        recipient=str(r[7]),
        decision=str(r[8]),
        view=str(r[9]),
        subject_key=r[10],
        decided_at=str(r[11]),
    )
    return Row(int(r[0]), str(r[1]), bytes(r[2]), bytes(r[3]), bytes(r[4]), columns)


def _create_private(path: Path) -> None:
    """Create the ledger file mode 0600 (SQLite gives its -wal and -shm the same)."""
    try:
        os.close(os.open(path, os.O_RDWR | os.O_CREAT, _FILE_MODE))
    except OSError as e:
        raise LedgerError(f"cannot create ledger {path}: {e.strerror}") from e


def _lock(path: Path) -> IO[bytes]:
    """An exclusive advisory lock beside the ledger; the OS drops it if we die."""
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        fd = os.open(
            path.parent / f"{path.name}.lock", os.O_RDWR | os.O_CREAT, _FILE_MODE
        )
        handle = os.fdopen(fd, "a+b")
    except OSError as e:
        raise LedgerError(f"cannot create ledger folder for {path}: {e.strerror}") from e
    try:
        fcntl.flock(handle.fileno(), fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError as e:
        handle.close()
        raise LedgerBusyError(f"another audit service is already writing {path}") from e
    return handle
