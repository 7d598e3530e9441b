"""The shared opening of a service's SQLite state database."""

from __future__ import annotations

import sqlite3
import stat
from pathlib import Path

import pytest

from services.runtime.sqlite import open_state_db, writing


class _StateError(Exception):
    """Stands for a service's own store error."""


def _schema(db: sqlite3.Connection) -> None:
    db.execute("CREATE TABLE IF NOT EXISTS t (n INTEGER)")


def test_a_writable_state_database_is_created_owner_only_in_wal_mode(
    tmp_path: Path,
) -> None:
    path = tmp_path / "state" / "x.db"
    db = open_state_db(path, readonly=False, what="x", error=_StateError, prepare=_schema)
    try:
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert db.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        assert db.execute("SELECT count(*) FROM t").fetchone()[0] == 0
    finally:
        db.close()


def test_a_missing_database_opened_read_only_raises_the_services_error(
    tmp_path: Path,
) -> None:
    with pytest.raises(_StateError, match="no x database at"):
        open_state_db(
            tmp_path / "absent.db",
            readonly=True,
            what="x",
            error=_StateError,
            prepare=_schema,
        )


def test_a_read_only_database_refuses_a_write_with_the_services_error(
    tmp_path: Path,
) -> None:
    path = tmp_path / "x.db"
    open_state_db(
        path, readonly=False, what="x", error=_StateError, prepare=_schema
    ).close()
    db = open_state_db(path, readonly=True, what="x", error=_StateError, prepare=_schema)
    try:
        with (
            pytest.raises(_StateError, match="x database write failed"),
            writing(db, what="x", error=_StateError) as w,
        ):
            w.execute("INSERT INTO t VALUES (1)")
    finally:
        db.close()
