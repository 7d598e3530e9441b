"""The indicators' SQLite database: counts per indicator, day and cell; releases.

One batch of delivered records is one transaction, written before the consumer
commits its offsets. Every event id counted is kept in ``events``: a record read
again (redelivery, a crash between the write and the commit, a rebuild over a
live database) finds its id there and adds nothing, so counts are exact.

A correction (``envelope.supersedes_event_id``) replaces the event it names: the
cells that event added (kept with its id in ``events``) lose their one, and an event
already superseded when it arrives adds nothing, so the counts do not depend on
the order the two arrive in.

A release freezes an indicator's counts up to a day (``releases``, ``released``):
published tables are cut from the frozen copy only, so two requests at different
times show the same numbers. Events that arrive for a released day still enter the
live counts and are counted in ``late``, never in a published table.

The database holds indicator ids, days, dimension values, counts, per-recipient
event and referral ids and hour-cut times: never personal data. It is created
readable by its owner only.
"""

from __future__ import annotations

import json
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date, datetime
from typing import Any, Final, TypeVar

from services.indicators.catalogue import Catalogue, identifier
from services.indicators.counting import contributions, derived_values
from services.indicators.errors import StoreError
from services.indicators.tables import Counts
from services.runtime.sqlite import StateStore

_T = TypeVar("_T")

_SCHEMA: Final = """
-- cells: the row ids of the counts the event added one to (comma-separated), so a
-- correction can take them back; NULL when it added none or was superseded.
CREATE TABLE IF NOT EXISTS events (event_id TEXT PRIMARY KEY, cells TEXT);
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
CREATE TABLE IF NOT EXISTS superseded (event_id TEXT PRIMARY KEY);
CREATE TABLE IF NOT EXISTS releases (
    indicator TEXT NOT NULL,
    through TEXT NOT NULL,
    released_at TEXT NOT NULL,
    PRIMARY KEY (indicator, through)
);
CREATE TABLE IF NOT EXISTS released (
    indicator TEXT NOT NULL,
    day TEXT NOT NULL,
    cell TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (indicator, day, cell)
);
CREATE TABLE IF NOT EXISTS late (
    indicator TEXT NOT NULL,
    day TEXT NOT NULL,
    n INTEGER NOT NULL,
    PRIMARY KEY (indicator, day)
);
"""
# The tables a rebuild takes over from the live database: what was published.
RELEASE_TABLES: Final = ("releases", "released", "late")


@dataclass
class BatchResult:
    """What one batch did."""

    counted: int = 0  # new events (whether or not an indicator selected them)
    duplicates: int = 0  # event ids counted before
    unreadable: int = 0  # records with no event id
    cells: int = 0  # +1s added to cells
    corrections: int = 0  # events that supersede another
    late: int = 0  # changes to cells of days already released


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
            corrected = db.execute("SELECT EXISTS (SELECT 1 FROM superseded)")
            batch = _Batch(
                db, catalogue, _watermarks(db), result, bool(corrected.fetchone()[0])
            )
            for event_type, datum in records:
                batch.count(event_type, datum)
        return result

    def release(self, through: Mapping[str, date], at: datetime) -> list[str]:
        """Freeze each indicator's counts up to its day; the indicators released.

        An indicator already released through that day (or later) is left as it is.
        """
        done = []
        with self._writing() as db:
            marks = _watermarks(db)
            for indicator, last in sorted(through.items()):
                old = marks.get(indicator)
                if old is not None and last <= old:
                    continue
                db.execute(
                    "INSERT INTO releases (indicator, through, released_at)"
                    " VALUES (?, ?, ?)",
                    (indicator, last.isoformat(), at.isoformat()),
                )
                db.execute(
                    "INSERT INTO released (indicator, day, cell, n)"
                    " SELECT indicator, day, cell, n FROM counts"
                    " WHERE indicator = ? AND day > ? AND day <= ? AND n > 0",
                    (indicator, old.isoformat() if old else "", last.isoformat()),
                )
                done.append(indicator)
        return done

    def counts(
        self,
        indicator: str,
        release_after: int,
        *,
        live: bool = False,
        days: tuple[date, date] | None = None,
    ) -> Counts:
        """What ``indicator``'s tables are cut from (with the live counts: operators).

        ``days``: only the counts of those days (first, last), for a request that
        needs no others.
        """
        return Counts(
            released=self.released_counts(indicator, days),
            through=self.released_through().get(indicator),
            release_after=release_after,
            live=self.day_counts(indicator, days) if live else None,
        )

    def released_through(self) -> dict[str, date]:
        """The day each released indicator is frozen up to."""
        return self._read(_watermarks)

    def released_counts(
        self, indicator: str, days: tuple[date, date] | None = None
    ) -> dict[tuple[date, tuple[str, ...]], int]:
        """Every (day, cell) count of ``indicator`` as released (of ``days`` only)."""
        return self._cells("released", indicator, days)

    def late_events(self) -> dict[str, int]:
        """Per indicator, changes to released days since their release."""
        rows = self._read(
            lambda db: db.execute(
                "SELECT indicator, SUM(n) FROM late GROUP BY indicator"
            ).fetchall()
        )
        return {str(i): int(n) for i, n in rows}

    def adopt_releases(self, other: Store) -> None:
        """Take ``other``'s releases (a rebuild keeps what was published)."""
        with self._writing() as db:
            for table in RELEASE_TABLES:
                rows = other.rows_of(table)
                db.execute(f"DELETE FROM {table}")  # noqa: S608 - fixed names
                if rows:
                    marks = ", ".join("?" * len(rows[0]))
                    db.executemany(f"INSERT INTO {table} VALUES ({marks})", rows)  # noqa: S608

    def rows_of(self, table: str) -> list[tuple[Any, ...]]:
        """Every row of one of the release tables, as stored."""
        if table not in RELEASE_TABLES:
            raise StoreError(f"not a release table: {table}")
        query = f"SELECT * FROM {table}"  # noqa: S608 - one of three fixed names
        return self._read(lambda db: [tuple(r) for r in db.execute(query).fetchall()])

    def day_counts(
        self, indicator: str, days: tuple[date, date] | None = None
    ) -> dict[tuple[date, tuple[str, ...]], int]:
        """Every (day, cell) count of ``indicator`` so far (live; of ``days`` only)."""
        return self._cells("counts", indicator, days)

    def events(self) -> int:
        """How many distinct events were counted."""
        return int(
            self._read(lambda db: db.execute("SELECT COUNT(*) FROM events").fetchone())[0]
        )

    def _cells(
        self, table: str, indicator: str, days: tuple[date, date] | None
    ) -> dict[tuple[date, tuple[str, ...]], int]:
        first, last = ("", "9") if days is None else (d.isoformat() for d in days)
        rows = self._read(
            lambda db: db.execute(
                f"SELECT day, cell, n FROM {table} WHERE indicator = ? AND n > 0"  # noqa: S608 - fixed names
                " AND day BETWEEN ? AND ?",
                (indicator, first, last),
            ).fetchall()
        )
        return {
            (date.fromisoformat(day), tuple(json.loads(cell))): int(n)
            for day, cell, n in rows
        }

    def _read(self, query: Callable[[sqlite3.Connection], _T]) -> _T:
        try:
            return query(self._db)
        except sqlite3.OperationalError as e:
            if "no such table" in str(e):
                raise StoreError(
                    "the indicators database predates this version (no releases or "
                    "corrections yet); start the service once, which upgrades it"
                ) from e
            raise StoreError(f"indicators database read failed: {e}") from e
        except sqlite3.Error as e:
            raise StoreError(f"indicators database read failed: {e}") from e


@dataclass
class _Batch:
    """One batch's writes: counts, corrections and late changes, one transaction."""

    db: sqlite3.Connection
    catalogue: Catalogue
    marks: Mapping[str, date]
    result: BatchResult
    corrected: bool  # whether any event was ever superseded (corrections are rare)

    def count(self, event_type: str, datum: Mapping[str, Any]) -> None:
        """Count one record (nothing when its event id was counted before)."""
        event_id = identifier(datum, "envelope.event_id")
        if event_id is None:
            self.result.unreadable += 1
            return
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO events (event_id) VALUES (?)", (event_id,)
        )
        if cursor.rowcount == 0:
            self.result.duplicates += 1
            return
        self.result.counted += 1
        target = identifier(datum, "envelope.supersedes_event_id")
        if target is not None and target != event_id:
            self.result.corrections += 1
            self._supersede(target)
        if self._is_superseded(event_id):
            return  # its correction came first: it adds nothing
        derived = derived_values(
            event_type,
            datum,
            lambda r: _sent_at(self.db, r),
            lambda r, at: _remember(self.db, r, at),
        )
        added = [
            self._add(c.indicator, c.day, json.dumps(list(c.cell)))
            for c in contributions(self.catalogue, event_type, datum, derived)
        ]
        if added:
            self.db.execute(
                "UPDATE events SET cells = ? WHERE event_id = ?",
                (",".join(map(str, added)), event_id),
            )
            self.result.cells += len(added)

    def _supersede(self, target: str) -> None:
        cursor = self.db.execute(
            "INSERT OR IGNORE INTO superseded (event_id) VALUES (?)", (target,)
        )
        self.corrected = True
        if cursor.rowcount == 0:
            return  # superseded before (two corrections of one event)
        row = self.db.execute(
            "SELECT cells FROM events WHERE event_id = ?", (target,)
        ).fetchone()
        if row is None or row[0] is None:
            return  # not counted yet (it will add nothing), or it added nothing
        for rowid in row[0].split(","):
            self._take_back(int(rowid))
        self.db.execute("UPDATE events SET cells = NULL WHERE event_id = ?", (target,))

    def _is_superseded(self, event_id: str) -> bool:
        if not self.corrected:
            return False  # no event was ever superseded: nothing to look up
        found = self.db.execute(
            "SELECT 1 FROM superseded WHERE event_id = ?", (event_id,)
        ).fetchone()
        return found is not None

    def _add(self, indicator: str, day: date, cell: str) -> int:
        """One more in a cell; the cell's row id (what a correction takes back)."""
        (rowid,) = self.db.execute(
            "INSERT INTO counts (indicator, day, cell, n) VALUES (?, ?, ?, 1)"
            " ON CONFLICT (indicator, day, cell) DO UPDATE SET n = n + 1"
            " RETURNING rowid",
            (indicator, day.isoformat(), cell),
        ).fetchone()
        self._note_late(indicator, day)
        return int(rowid)

    def _take_back(self, rowid: int) -> None:
        """One less in the cell of row ``rowid`` (counts rows are never deleted)."""
        found = self.db.execute(
            "UPDATE counts SET n = n - 1 WHERE rowid = ? RETURNING indicator, day",
            (rowid,),
        ).fetchone()
        if found is not None:
            self._note_late(str(found[0]), date.fromisoformat(found[1]))

    def _note_late(self, indicator: str, day: date) -> None:
        mark = self.marks.get(indicator)
        if mark is not None and day <= mark:
            self.result.late += 1
            self.db.execute(
                "INSERT INTO late (indicator, day, n) VALUES (?, ?, 1)"
                " ON CONFLICT (indicator, day) DO UPDATE SET n = n + 1",
                (indicator, day.isoformat()),
            )


def _watermarks(db: sqlite3.Connection) -> dict[str, date]:
    rows = db.execute(
        "SELECT indicator, MAX(through) FROM releases GROUP BY indicator"
    ).fetchall()
    return {str(i): date.fromisoformat(t) for i, t in rows}


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
    columns = {row[1] for row in db.execute("PRAGMA table_info(events)")}
    if "cells" not in columns:  # a database from before corrections were handled
        db.execute("ALTER TABLE events ADD COLUMN cells TEXT")
