"""Event-id memory that survives restarts: SQLite, one row per routed event.

An id is remembered only after every output of its event was acknowledged, so a
crash before that re-routes the event (at-least-once) instead of losing it.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Iterable
from pathlib import Path

from services.contracts.errors import PuenteError

_SCHEMA = """
CREATE TABLE IF NOT EXISTS seen (
    event_id TEXT PRIMARY KEY,
    content_hash BLOB NOT NULL,
    routed_at REAL NOT NULL
) WITHOUT ROWID
"""
_CHUNK = 500  # stays under SQLite's host-parameter limit


class DedupeStoreError(PuenteError):
    """The de-duplication store cannot be opened or written."""


class DedupeStore:
    """Which event ids were routed, with the hash of their content."""

    def __init__(self, path: Path) -> None:
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            self._db = sqlite3.connect(
                path, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            # NORMAL in WAL mode survives a process crash, which is what kill -9 is.
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.execute(_SCHEMA)
        except sqlite3.Error as e:
            raise DedupeStoreError(f"cannot open de-duplication store {path}: {e}") from e

    def lookup(self, event_ids: Iterable[str]) -> dict[str, bytes]:
        """The stored content hash of each of ``event_ids`` that was routed before."""
        ids = list(dict.fromkeys(event_ids))
        found: dict[str, bytes] = {}
        for start in range(0, len(ids), _CHUNK):
            chunk = ids[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            rows = self._db.execute(
                f"SELECT event_id, content_hash FROM seen WHERE event_id IN ({marks})",  # noqa: S608 - only placeholders
                chunk,
            )
            found.update(rows)
        return found

    def remember(self, routed: Iterable[tuple[str, bytes]], now: float) -> None:
        """Record routed events in one transaction."""
        try:
            self._db.execute("BEGIN")
            self._db.executemany(
                "INSERT OR IGNORE INTO seen VALUES (?, ?, ?)",
                ((event_id, digest, now) for event_id, digest in routed),
            )
            self._db.execute("COMMIT")
        except sqlite3.Error as e:
            self._db.execute("ROLLBACK")
            raise DedupeStoreError(f"cannot record routed events: {e}") from e

    def close(self) -> None:
        """Close the database."""
        self._db.close()
