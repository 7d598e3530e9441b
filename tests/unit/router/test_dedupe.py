"""The event-id memory: what it remembers, and opening a file another router shares."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path
from typing import Any

import pytest

from services.router import dedupe
from services.router.dedupe import DedupeStore


class _FlakyConnection:
    """A connection that finds the file locked a few times, as while another opens it."""

    def __init__(self, failures: int) -> None:
        self.failures = failures
        self.statements: list[str] = []

    def execute(self, sql: str, *args: Any) -> None:
        del args
        if self.failures:
            self.failures -= 1
            raise sqlite3.OperationalError("database is locked")
        self.statements.append(sql.strip().split()[0])


def test_opening_a_file_another_router_is_switching_to_wal_is_retried() -> None:
    connection = _FlakyConnection(failures=3)
    dedupe._prepare(connection)  # type: ignore[arg-type]
    assert connection.statements == ["PRAGMA", "CREATE"]


def test_other_database_errors_at_open_are_not_retried() -> None:
    class Broken(_FlakyConnection):
        def execute(self, sql: str, *args: Any) -> None:
            self.statements.append(sql)
            raise sqlite3.OperationalError("disk I/O error")

    connection = Broken(failures=0)
    with pytest.raises(sqlite3.OperationalError, match="disk I/O"):
        dedupe._prepare(connection)  # type: ignore[arg-type]
    assert len(connection.statements) == 1


def test_two_stores_on_one_file_see_each_others_events(tmp_path: Path) -> None:
    path = tmp_path / "router" / "dedupe.sqlite"
    first, second = DedupeStore(path), DedupeStore(path)
    try:
        asyncio.run(first.remember([("e1", b"d1")], 1.0))
        assert second.lookup(["e1", "e2"]) == {"e1": b"d1"}
    finally:
        first.close()
        second.close()


def test_a_large_batch_is_remembered_whole_across_several_statements(
    tmp_path: Path,
) -> None:
    store = DedupeStore(tmp_path / "dedupe.sqlite")
    rows = [(f"e{i}", i.to_bytes(4, "big")) for i in range(12_345)]
    try:
        asyncio.run(store.remember([*rows, rows[0]], 1.0))  # a repeat is ignored
        assert store.lookup(event_id for event_id, _ in rows) == dict(rows)
    finally:
        store.close()
