"""The indicators' SQLite database: counts per indicator, day and cell.

One batch of delivered records is one transaction, written before the consumer
commits its offsets. Every event id counted is kept in ``events``: a record read
again (redelivery, a crash between the write and the commit, a rebuild over a
live database) finds its id there and adds nothing, so counts are exact. The
database holds indicator ids, days, dimension values, counts, per-recipient event
and referral ids and hour-cut times: never personal data. It is created readable
by its owner only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final

from services.indicators.catalogue import Catalogue, identifier
from services.indicators.counting import contributions, derived_values
from services.indicators.errors import StoreError
from services.runtime.sqlite import StateStore

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS counts (
    indicator TEXT NOT NULL,
    day TEXT NOT NULL,
    cell TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (indicator, day, cell)
);
CREATE TABLE IF NOT EXISTS referral_sent (
    referral_id TEXT PRIMARY KEY,
    sent_at TEXT NOT NULL
);
"""


@dataclass
class BatchResult:
    """What one batch did."""

    counted: int = 0  # new events (whether or not an indicator selected them)
    duplicates: int = 0  # event ids counted before
    unreadable: int = 0  # records with no event id
    cells: int = 0  # +1s added to cells


class Store(StateStore):
    """One indicators database; one writer (the service or a rebuild) at a time."""

    WHAT = "indicators"
    ERROR = StoreError

    @staticmethod
    def prepare(db: sqlite3.Connection) -> None:
        """Bring a freshly opened writable database to the service's schema."""
        _prepare(db)

    def apply(
        self, catalogue: Catalogue, records: Sequence[tuple[str, Mapping[str, Any]]]
    ) -> BatchResult:
        """Count ``records`` (event type, decoded datum) in one transaction."""
        result = BatchResult()
        with self._writing() as db:
            for event_type, datum in records:
                event_id = identifier(datum, "envelope.event_id")
                if event_id is None:
                    result.unreadable += 1
                    continue
                cursor = db.execute(
                    "INSERT OR IGNORE INTO events (event_id) VALUES (?)", (event_id,)
                )
                if cursor.rowcount == 0:
                    result.duplicates += 1
                    continue
                result.counted += 1
                derived = derived_values(
                    event_type,
                    datum,
                    lambda r: _sent_at(db, r),
                    lambda r, at: _remember(db, r, at),
                )
                for c in contributions(catalogue, event_type, datum, derived):
                    db.execute(
                        "INSERT INTO counts (indicator, day, cell, n) VALUES (?, ?, ?, 1)"
                        " ON CONFLICT (indicator, day, cell) DO UPDATE SET n = n + 1",
                        (c.indicator, c.day.isoformat(), json.dumps(list(c.cell))),
                    )
                    result.cells += 1
        return result

    def day_counts(self, indicator: str) -> dict[tuple[date, tuple[str, ...]], int]:
        """Every (day, cell) count of ``indicator``."""
        try:
            rows = self._db.execute(
                "SELECT day, cell, n FROM counts WHERE indicator = ?", (indicator,)
            ).fetchall()
        except sqlite3.Error as e:
            raise StoreError(f"indicators database read failed: {e}") from e
        return {
            (date.fromisoformat(day), tuple(json.loads(cell))): int(n)
            for day, cell, n in rows
        }

    def events(self) -> int:
        """How many distinct events were counted."""
        try:
            return int(self._db.execute("SELECT COUNT(*) FROM events").fetchone()[0])
        except sqlite3.Error as e:
            raise StoreError(f"indicators database read failed: {e}") from e


def _sent_at(db: sqlite3.Connection, referral: str) -> datetime | None:
    row = db.execute(
        "SELECT sent_at FROM referral_sent WHERE referral_id = ?", (referral,)
    ).fetchone()
    return None if row is None else datetime.fromisoformat(row[0])


def _remember(db: sqlite3.Connection, referral: str, at: datetime) -> None:
    db.execute(
        "INSERT OR IGNORE INTO referral_sent (referral_id, sent_at) VALUES (?, ?)",
        (referral, at.isoformat()),
    )


def _prepare(db: sqlite3.Connection) -> None:
    db.executescript(_SCHEMA)
