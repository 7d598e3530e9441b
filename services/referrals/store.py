"""The tracker's SQLite database: each referral's state, its history, overdue notices.

State is event-sourced: every lifecycle event the tracker reads is kept in
``history`` under its event id (applied, or refused with its reason), and the
``referrals`` row is what applying the accepted ones in order gives. An event that
arrives before the one it follows (another institution's topic was read first)
waits in ``pending`` and is applied, in time order, once it follows. One batch of
events is one transaction, written before the consumer commits its offsets: an
event read again after a crash finds its id in ``history`` and changes nothing.
Notices are keyed by referral, receipt (a reassignment starts a new one), stage,
level and recipient, so no escalation is ever issued twice; the events that carry
them wait in ``outbox``, written in the transaction that issues them and sent from
there until the broker has them. The database holds ids, symbols and times only,
never personal data; it is created readable by its owner only.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any, Final

from services.referrals.errors import TrackerStoreError
from services.referrals.machine import (
    Referral,
    Transition,
    TransitionEarlyError,
    TransitionRefusedError,
    apply,
)
from services.runtime.pubsub import Prepared
from services.runtime.sqlite import StateStore

APPLIED: Final = "applied"
# A party's role -> the column that names it.
_ROLES: Final = {"sent": ("referring",), "received": ("receiving",)}
REFUSED: Final = "refused"
WAITING: Final = "waiting"
_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS referrals (
    referral_id TEXT PRIMARY KEY,
    referring TEXT NOT NULL,
    receiving TEXT NOT NULL,
    urgency TEXT NOT NULL,
    service_group TEXT NOT NULL,
    is_minor INTEGER NOT NULL,
    status TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    acknowledged_at INTEGER,
    service_started_at INTEGER,
    closed_at INTEGER,
    response_due_at INTEGER,
    events INTEGER NOT NULL,
    overdue_stage TEXT,
    overdue_level INTEGER NOT NULL DEFAULT 0,
    overdue_due_at INTEGER
);
CREATE TABLE IF NOT EXISTS history (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    referral_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    institution TEXT NOT NULL,
    lifecycle_event TEXT NOT NULL,
    status TEXT NOT NULL,
    previous_status TEXT,
    outcome TEXT NOT NULL,
    reason TEXT,
    message TEXT
);
CREATE INDEX IF NOT EXISTS history_by_referral ON history (referral_id, seq);
CREATE TABLE IF NOT EXISTS pending (
    event_id TEXT PRIMARY KEY,
    referral_id TEXT NOT NULL,
    occurred_at INTEGER NOT NULL,
    transition TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS pending_by_referral ON pending (referral_id, occurred_at);
CREATE TABLE IF NOT EXISTS notices (
    referral_id TEXT NOT NULL,
    stage TEXT NOT NULL,
    level INTEGER NOT NULL,
    recipient TEXT NOT NULL,
    role TEXT NOT NULL,
    due_at INTEGER NOT NULL,
    issued_at INTEGER NOT NULL,
    received_at INTEGER NOT NULL,
    PRIMARY KEY (referral_id, received_at, stage, level, recipient)
);
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    event_id TEXT NOT NULL UNIQUE,
    referral_id TEXT NOT NULL,
    topic TEXT NOT NULL,
    key BLOB NOT NULL,
    value BLOB NOT NULL,
    headers TEXT NOT NULL,
    created_at INTEGER NOT NULL,
    sent_at INTEGER
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (sent_at, seq);
"""
_REFERRAL_COLUMNS: Final = (
    "referral_id, referring, receiving, urgency, service_group, is_minor, status, "
    "created_at, sent_at, updated_at, acknowledged_at, service_started_at, closed_at, "
    "response_due_at, events"
)
_TIMES: Final = frozenset(
    {
        "created_at",
        "sent_at",
        "updated_at",
        "acknowledged_at",
        "service_started_at",
        "closed_at",
        "response_due_at",
    }
)


def to_ms(at: datetime | None) -> int | None:
    """Milliseconds since the epoch (what the database keeps), or None."""
    return None if at is None else round(at.timestamp() * 1000)


def from_ms(ms: int | None) -> datetime | None:
    """The UTC time of ``ms`` milliseconds since the epoch, or None."""
    return None if ms is None else datetime.fromtimestamp(ms / 1000, UTC)


@dataclass(frozen=True, slots=True)
class Overdue:
    """A referral past a deadline: which one, how far escalated, since when."""

    stage: str  # acknowledge | service
    level: int  # 1: past the deadline; 2: past the further escalation period
    due_at: datetime


@dataclass(frozen=True, slots=True)
class Tracked:
    """A referral's state with its overdue mark (None: within its deadlines)."""

    referral: Referral
    overdue: Overdue | None


@dataclass(frozen=True, slots=True)
class Step:
    """One line of a referral's history."""

    seq: int
    event_id: str
    occurred_at: datetime
    institution: str
    lifecycle_event: str
    status: str
    previous_status: str | None
    outcome: str
    reason: str | None
    message: str | None


@dataclass(frozen=True, slots=True)
class Notice:
    """A ``referral_overdue`` notice to one institution."""

    referral_id: str
    stage: str
    level: int
    recipient: str
    role: str  # referring | supervisor
    due_at: datetime
    issued_at: datetime
    # When the receiving institution got the referral: a reassignment's new receiver
    # is escalated on its own clock.
    received_at: datetime


# Builds, for the notices a check has just issued, the events that carry them.
Compose = Callable[[Sequence[Notice]], Sequence[Prepared]]


@dataclass
class BatchResult:
    """What a batch did: events applied, refused (with reasons), already seen."""

    applied: int = 0
    duplicates: int = 0
    waiting: int = 0  # events of the batch kept aside until the ones they follow arrive
    released: int = 0  # waiting events (of this batch or earlier) applied or refused
    refused: list[tuple[Transition, str]] = field(default_factory=list)


class Store(StateStore):
    """One tracker database; one writer (the service or a rebuild) at a time."""

    WHAT = "tracker"
    ERROR = TrackerStoreError
    ROWS_BY_NAME = True

    @staticmethod
    def prepare(db: sqlite3.Connection) -> None:
        """Bring a freshly opened writable database to the service's schema."""
        _prepare(db)

    def apply(self, events: Sequence[Transition]) -> BatchResult:
        """Apply ``events`` in order, in one transaction; seen event ids are skipped."""
        result = BatchResult()
        with self._writing() as db:
            for event in events:
                if _seen(db, event.event_id):
                    result.duplicates += 1
                    continue
                if self._step(db, event, result) == APPLIED:
                    self._release(db, event.referral_id, result)
        return result

    def _step(
        self, db: sqlite3.Connection, event: Transition, result: BatchResult
    ) -> str:
        """Apply, refuse or keep aside one event; which of the three happened."""
        outcome = self._attempt(db, event, result)
        if outcome == WAITING:
            _park(db, event)
            result.waiting += 1
        return outcome

    def _attempt(
        self, db: sqlite3.Connection, event: Transition, result: BatchResult
    ) -> str:
        """Apply or refuse ``event``, or leave it be (WAITING) if it comes too early."""
        try:
            moved = apply(self._get(db, event.referral_id), event)
        except TransitionEarlyError:
            return WAITING
        except TransitionRefusedError as e:
            _record(db, event, REFUSED, e.reason, str(e))
            result.refused.append((event, e.reason))
            return REFUSED
        _record(db, event, APPLIED, None, None)
        _put(db, moved)
        if moved.status != event.previous_status or event.lifecycle_event == "REASSIGNED":
            # What was overdue was awaited in the status just left (or from the
            # receiver just replaced): the next check marks what is overdue now.
            _unmark(db, moved.referral_id)
        result.applied += 1
        return APPLIED

    def _release(
        self, db: sqlite3.Connection, referral_id: str, result: BatchResult
    ) -> None:
        """Apply the waiting events of ``referral_id`` that now follow, in time order."""
        progress = True
        while progress:
            progress = False
            for event in _parked(db, referral_id):
                if self._attempt(db, event, result) == WAITING:
                    continue
                db.execute("DELETE FROM pending WHERE event_id = ?", (event.event_id,))
                result.released += 1
                progress = True
                break

    def get(self, referral_id: str) -> Tracked | None:
        """The referral ``referral_id`` with its overdue mark, or None."""
        row = self._db.execute(
            "SELECT * FROM referrals WHERE referral_id = ?", (referral_id,)
        ).fetchone()
        return None if row is None else _tracked(row)

    def _get(self, db: sqlite3.Connection, referral_id: str) -> Referral | None:
        row = db.execute(
            "SELECT * FROM referrals WHERE referral_id = ?", (referral_id,)
        ).fetchone()
        return None if row is None else _referral(row)

    def all(self) -> list[Tracked]:
        """Every tracked referral, oldest first."""
        rows = self._db.execute("SELECT * FROM referrals ORDER BY sent_at, referral_id")
        return [_tracked(r) for r in rows]

    def of_institution(
        self,
        institution: str,
        role: str | None = None,
        status: str | None = None,
        *,
        overdue: bool = False,
    ) -> list[Tracked]:
        """The referrals ``institution`` made (role "sent") or is to serve ("received").

        ``role`` None: both. ``status``: only that status; ``overdue``: only those
        past a deadline. Newest first.
        """
        columns = _ROLES.get(role or "", ("referring", "receiving"))
        where = [" OR ".join(f"{c} = ?" for c in columns)]
        args: list[Any] = [institution] * len(columns)
        if status is not None:
            where.append("status = ?")
            args.append(status)
        if overdue:
            # A closed referral owes nothing, whatever mark the last check left.
            where.append("overdue_stage IS NOT NULL AND closed_at IS NULL")
        sql = " AND ".join(f"({w})" for w in where)
        rows = self._db.execute(
            f"SELECT * FROM referrals WHERE {sql} "  # noqa: S608 - constant fragments
            "ORDER BY sent_at DESC, referral_id",
            args,
        )
        return [_tracked(r) for r in rows]

    def acted(self, referral_id: str, institution: str) -> bool:
        """Whether ``institution`` published an applied event of ``referral_id``."""
        found = self._db.execute(
            "SELECT 1 FROM history WHERE referral_id = ? AND institution = ? "
            "AND outcome = ? LIMIT 1",
            (referral_id, institution, APPLIED),
        )
        return found.fetchone() is not None

    def history(self, referral_id: str) -> list[Step]:
        """Every event read for ``referral_id``, in the order it was read."""
        rows = self._db.execute(
            "SELECT * FROM history WHERE referral_id = ? ORDER BY seq", (referral_id,)
        )
        return [_step(r) for r in rows]

    def refusals(self) -> dict[str, int]:
        """Refused events by reason."""
        rows = self._db.execute(
            "SELECT reason, COUNT(*) FROM history WHERE outcome = ? GROUP BY reason",
            (REFUSED,),
        )
        return {str(r[0]): int(r[1]) for r in rows}

    def mark(
        self,
        marks: dict[str, Overdue | None],
        notices: Sequence[Notice],
        compose: Compose | None = None,
        events: Sequence[Prepared] = (),
    ) -> list[Notice]:
        """Store overdue marks and the notices not issued before; return the new ones.

        ``compose`` gives the events of the new notices; they join the outbox in the
        same transaction, so a notice is issued with its event or not at all.
        ``events`` join the outbox as they are (those queued before are kept).
        """
        issued = []
        with self._writing() as db:
            for referral_id, overdue in marks.items():
                db.execute(
                    "UPDATE referrals SET overdue_stage = ?, overdue_level = ?, "
                    "overdue_due_at = ? WHERE referral_id = ?",
                    (
                        overdue.stage if overdue else None,
                        overdue.level if overdue else 0,
                        to_ms(overdue.due_at) if overdue else None,
                        referral_id,
                    ),
                )
            for notice in notices:
                cursor = db.execute(
                    "INSERT OR IGNORE INTO notices VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    (
                        notice.referral_id,
                        notice.stage,
                        notice.level,
                        notice.recipient,
                        notice.role,
                        to_ms(notice.due_at),
                        to_ms(notice.issued_at),
                        to_ms(notice.received_at),
                    ),
                )
                if cursor.rowcount:
                    issued.append(notice)
            if issued and compose is not None:
                _queue(db, compose(issued), to_ms(issued[0].issued_at) or 0)
            if events:
                _queue(db, events, to_ms(datetime.now(UTC)) or 0)
        return issued

    def sends(self, referral_id: str) -> list[tuple[str, str, datetime | None]]:
        """The events published about ``referral_id``: (event id, topic, sent at)."""
        rows = self._db.execute(
            "SELECT event_id, topic, sent_at FROM outbox WHERE referral_id = ? "
            "ORDER BY seq",
            (referral_id,),
        )
        return [(r[0], r[1], from_ms(r[2])) for r in rows]

    def queued(self, event_id: str) -> bool:
        """Whether the event ``event_id`` is in the outbox (sent or not)."""
        found = self._db.execute("SELECT 1 FROM outbox WHERE event_id = ?", (event_id,))
        return found.fetchone() is not None

    def unsent(self, limit: int = 500) -> list[Prepared]:
        """Events of the outbox the broker has not acknowledged yet, oldest first."""
        rows = self._db.execute(
            "SELECT topic, key, value, headers, event_id FROM outbox "
            "WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return _prepared(rows)

    def published(self, referral_id: str) -> list[Prepared]:
        """The events published (or waiting to be) about ``referral_id``, oldest first."""
        rows = self._db.execute(
            "SELECT topic, key, value, headers, event_id FROM outbox "
            "WHERE referral_id = ? ORDER BY seq",
            (referral_id,),
        )
        return _prepared(rows)

    def sent(self, event_ids: Sequence[str], at: datetime) -> None:
        """Record that the broker acknowledged the events ``event_ids``."""
        with self._writing() as db:
            db.executemany(
                "UPDATE outbox SET sent_at = ? WHERE event_id = ? AND sent_at IS NULL",
                [(to_ms(at), e) for e in event_ids],
            )

    def outbox(self) -> dict[str, int]:
        """How many outbox events are sent and waiting."""
        row = self._db.execute(
            "SELECT COUNT(sent_at), COUNT(*) - COUNT(sent_at) FROM outbox"
        ).fetchone()
        return {"sent": int(row[0]), "waiting": int(row[1])}

    def notices(self, referral_id: str | None = None) -> list[Notice]:
        """Notices issued (for one referral, or all), oldest first."""
        sql, args = "SELECT * FROM notices", tuple[str, ...]()
        if referral_id is not None:
            sql, args = sql + " WHERE referral_id = ?", (referral_id,)
        rows = self._db.execute(sql + " ORDER BY issued_at, referral_id, level", args)
        return [
            Notice(
                r["referral_id"],
                r["stage"],
                int(r["level"]),
                r["recipient"],
                r["role"],
                _at(r["due_at"]),
                _at(r["issued_at"]),
                _at(r["received_at"]),
            )
            for r in rows
        ]

    def snapshot(self) -> dict[str, Any]:
        """Everything the topic alone determines: states and histories (for rebuild)."""
        referrals = [
            dict(r)
            for r in self._db.execute(
                f"SELECT {_REFERRAL_COLUMNS} FROM referrals ORDER BY referral_id"  # noqa: S608 - constant columns
            )
        ]
        history = [
            dict(r)
            for r in self._db.execute(
                "SELECT event_id, referral_id, occurred_at, institution, "
                "lifecycle_event, status, previous_status, outcome, reason "
                "FROM history ORDER BY seq"
            )
        ]
        pending = [
            dict(r)
            for r in self._db.execute(
                "SELECT event_id, referral_id FROM pending ORDER BY event_id"
            )
        ]
        return {"referrals": referrals, "history": history, "pending": pending}

    def waiting(self, referral_id: str | None = None) -> list[Transition]:
        """Events kept aside until the ones they follow arrive (one referral, or all)."""
        if referral_id is not None:
            return _parked(self._db, referral_id)
        rows = self._db.execute("SELECT transition FROM pending ORDER BY occurred_at")
        return [_transition(r[0]) for r in rows]


def _prepare(db: sqlite3.Connection) -> None:
    _migrate(db)
    db.executescript(_SCHEMA)


def _prepared(rows: Iterable[sqlite3.Row]) -> list[Prepared]:
    return [
        Prepared(
            r["topic"],
            bytes(r["key"]),
            bytes(r["value"]),
            [(str(k), str(v).encode()) for k, v in json.loads(r["headers"])],
            r["event_id"],
        )
        for r in rows
    ]


def _unmark(db: sqlite3.Connection, referral_id: str) -> None:
    db.execute(
        "UPDATE referrals SET overdue_stage = NULL, overdue_level = 0, "
        "overdue_due_at = NULL WHERE referral_id = ?",
        (referral_id,),
    )


def _queue(db: sqlite3.Connection, events: Sequence[Prepared], at: int) -> None:
    db.executemany(
        "INSERT OR IGNORE INTO outbox (event_id, referral_id, topic, key, value, "
        "headers, created_at) VALUES (?, ?, ?, ?, ?, ?, ?)",
        [
            (
                e.event_id,
                e.key.decode(),
                e.topic,
                e.key,
                e.value,
                json.dumps([(k, v.decode()) for k, v in e.headers]),
                at,
            )
            for e in events
        ],
    )


def _migrate(db: sqlite3.Connection) -> None:
    """Bring a database of an earlier tracker to the current tables."""
    columns = {r[1] for r in db.execute("PRAGMA table_info(notices)")}
    if columns and "received_at" not in columns:
        # Notices were keyed without the receipt: each belongs to the current one
        # (a reassignment before this version was never escalated again).
        with db:
            db.execute("ALTER TABLE notices RENAME TO notices_before_receipt")
            db.executescript(_SCHEMA)
            db.execute(
                "INSERT INTO notices SELECT n.*, r.sent_at "
                "FROM notices_before_receipt n JOIN referrals r USING (referral_id)"
            )
            db.execute("DROP TABLE notices_before_receipt")


def _seen(db: sqlite3.Connection, event_id: str) -> bool:
    found = db.execute(
        "SELECT 1 FROM history WHERE event_id = ? "
        "UNION ALL SELECT 1 FROM pending WHERE event_id = ?",
        (event_id, event_id),
    )
    return found.fetchone() is not None


def _park(db: sqlite3.Connection, event: Transition) -> None:
    values = dataclasses.asdict(event)
    for name in ("occurred_at", "response_due_at"):
        values[name] = to_ms(values[name])
    db.execute(
        "INSERT INTO pending VALUES (?, ?, ?, ?)",
        (event.event_id, event.referral_id, to_ms(event.occurred_at), json.dumps(values)),
    )


def _parked(db: sqlite3.Connection, referral_id: str) -> list[Transition]:
    rows = db.execute(
        "SELECT transition FROM pending WHERE referral_id = ? "
        "ORDER BY occurred_at, event_id",
        (referral_id,),
    )
    return [_transition(r[0]) for r in rows]


def _transition(text: str) -> Transition:
    values = json.loads(text)
    for name in ("occurred_at", "response_due_at"):
        values[name] = from_ms(values[name])
    return Transition(**values)


def _record(
    db: sqlite3.Connection,
    event: Transition,
    outcome: str,
    reason: str | None,
    message: str | None,
) -> None:
    db.execute(
        "INSERT INTO history (event_id, referral_id, occurred_at, institution, "
        "lifecycle_event, status, previous_status, outcome, reason, message) "
        "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?)",
        (
            event.event_id,
            event.referral_id,
            to_ms(event.occurred_at),
            event.source,
            event.lifecycle_event,
            event.status,
            event.previous_status,
            outcome,
            reason,
            message,
        ),
    )


def _put(db: sqlite3.Connection, referral: Referral) -> None:
    values = [
        to_ms(getattr(referral, c)) if c in _TIMES else getattr(referral, c)
        for c in _REFERRAL_COLUMNS.split(", ")
    ]
    db.execute(
        f"INSERT INTO referrals ({_REFERRAL_COLUMNS}) "  # noqa: S608 - constant columns
        f"VALUES ({', '.join('?' * len(values))}) "
        "ON CONFLICT (referral_id) DO UPDATE SET "
        + ", ".join(f"{c} = excluded.{c}" for c in _REFERRAL_COLUMNS.split(", ")[1:]),
        values,
    )


def _at(ms: int) -> datetime:
    return datetime.fromtimestamp(ms / 1000, UTC)


def _referral(row: sqlite3.Row) -> Referral:
    values: dict[str, Any] = {
        c: from_ms(row[c]) if c in _TIMES else row[c]
        for c in _REFERRAL_COLUMNS.split(", ")
    }
    values["is_minor"] = bool(values["is_minor"])
    return Referral(**values)


def _tracked(row: sqlite3.Row) -> Tracked:
    overdue = None
    if row["overdue_stage"] is not None:
        overdue = Overdue(
            row["overdue_stage"], int(row["overdue_level"]), _at(row["overdue_due_at"])
        )
    return Tracked(_referral(row), overdue)


def _step(row: sqlite3.Row) -> Step:
    return Step(
        int(row["seq"]),
        row["event_id"],
        _at(row["occurred_at"]),
        row["institution"],
        row["lifecycle_event"],
        row["status"],
        row["previous_status"],
        row["outcome"],
        row["reason"],
        row["message"],
    )
