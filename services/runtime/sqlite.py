"""A service's SQLite state database: opened one way, with one set of pragmas and errors.

Every recipient service that keeps state (indicators, the referral tracker) owns one
database file: created owner-only, written by one writer at a time from worker
threads, read by its CLI and the gateway read-only. Each service raises its own
exception type, named by ``error``, with messages that name the database by ``what``.
"""

from __future__ import annotations

import contextlib
import os
import sqlite3
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import ClassVar, Self

# Raises the service's own store error with an operator's message.
ErrorType = Callable[[str], Exception]
# Brings a freshly opened writable database to the service's schema.
Prepare = Callable[[sqlite3.Connection], None]


def open_state_db(
    path: Path, *, readonly: bool, what: str, error: ErrorType, prepare: Prepare
) -> sqlite3.Connection:
    """Open the ``what`` database at ``path``; writable ones are created owner-only."""
    try:
        if readonly:
            if not path.exists():
                raise error(f"no {what} database at {path}")
            return sqlite3.connect(f"file:{path}?mode=ro", uri=True, timeout=10)
        return _create(path, prepare)
    except sqlite3.Error as e:
        raise error(f"cannot open the {what} database {path}: {e}") from e


@contextlib.contextmanager
def writing(
    db: sqlite3.Connection, *, what: str, error: ErrorType
) -> Iterator[sqlite3.Connection]:
    """One transaction on ``db``; a SQLite failure becomes the service's ``error``."""
    try:
        with db:
            yield db
    except sqlite3.Error as e:
        raise error(f"{what} database write failed: {e}") from e


def _create(path: Path, prepare: Prepare) -> sqlite3.Connection:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    if not path.exists():
        # Created owner-only before SQLite writes anything to it.
        os.close(os.open(path, os.O_CREAT | os.O_WRONLY, 0o600))
    # One writer at a time, from worker threads; readers (CLI, gateway) open it too.
    db = sqlite3.connect(path, timeout=10, check_same_thread=False)
    db.execute("PRAGMA journal_mode = WAL")
    db.execute("PRAGMA synchronous = FULL")
    prepare(db)
    path.chmod(0o600)
    return db


class StateStore:
    """A service's state database: one writer (the service or a rebuild) at a time.

    A subclass names its database (``WHAT``, for messages), its store error
    (``ERROR``), its schema (``prepare``) and whether rows read by column name.
    """

    WHAT: ClassVar[str] = "state"
    ERROR: ClassVar[type[Exception]] = RuntimeError
    ROWS_BY_NAME: ClassVar[bool] = False

    def __init__(self, connection: sqlite3.Connection, path: Path) -> None:
        self._db = connection
        self.path = path

    @classmethod
    def open(cls, path: Path, *, readonly: bool = False) -> Self:
        """Open (creating it owner-only unless ``readonly``) the database at ``path``."""
        db = open_state_db(
            path, readonly=readonly, what=cls.WHAT, error=cls.ERROR, prepare=cls.prepare
        )
        if cls.ROWS_BY_NAME:
            db.row_factory = sqlite3.Row
        return cls(db, path)

    @staticmethod
    def prepare(db: sqlite3.Connection) -> None:
        """Bring a freshly opened writable database to the service's schema."""
        del db

    def close(self) -> None:
        """Close the connection."""
        self._db.close()

    def _writing(self) -> contextlib.AbstractContextManager[sqlite3.Connection]:
        return writing(self._db, what=self.WHAT, error=self.ERROR)
