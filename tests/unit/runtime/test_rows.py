"""Many rows in few statements: every row written once, in order, limits respected."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator

import pytest

from services.runtime.rows import insert_rows


@pytest.fixture
def db() -> Iterator[sqlite3.Connection]:
    connection = sqlite3.connect(":memory:", isolation_level=None)
    connection.execute("CREATE TABLE t (id INTEGER PRIMARY KEY, name TEXT UNIQUE, n INT)")
    yield connection
    connection.close()


def _statements(db: sqlite3.Connection) -> list[str]:
    seen: list[str] = []
    db.set_trace_callback(seen.append)
    return seen


def test_rows_beyond_the_parameter_limit_are_split_and_kept_in_order(
    db: sqlite3.Connection,
) -> None:
    db.setlimit(sqlite3.SQLITE_LIMIT_VARIABLE_NUMBER, 10)  # three rows of three
    statements = _statements(db)
    rows = [(i, f"n{i}", i * i) for i in range(1, 11)]
    insert_rows(db, "INSERT INTO t", rows)
    assert len(statements) == 4  # 3 + 3 + 3 + 1 rows
    assert db.execute("SELECT id, name, n FROM t ORDER BY rowid").fetchall() == rows


def test_a_tail_clause_applies_to_every_row(db: sqlite3.Connection) -> None:
    insert_rows(db, "INSERT INTO t", [(1, "a", 1)])
    insert_rows(
        db,
        "INSERT INTO t",
        [(2, "a", 2), (3, "b", 3)],
        "ON CONFLICT (name) DO NOTHING",
    )
    assert db.execute("SELECT id, name FROM t ORDER BY id").fetchall() == [
        (1, "a"),
        (3, "b"),
    ]


def test_no_rows_run_no_statement(db: sqlite3.Connection) -> None:
    statements = _statements(db)
    insert_rows(db, "INSERT INTO t", [])
    assert statements == []
