"""The durable outbox: SQLite in WAL mode, ``synchronous=FULL``, group commit.

A POST is answered only after its rows are committed (and so fsynced). One writer
task takes every request queued while the previous commit was syncing and commits
them together, so many requests share one fsync. All database work runs on a single
thread that owns the connection; the event loop never blocks on disk.

Rows hold the encoded Avro value, key and headers, so the relay does no work but
sending. ``(source, event_id)`` is unique: a repeated event is answered from the
row already stored, which is also the idempotency record.

A row the broker refuses for good (too large) is marked refused (``refused_at``,
``refusal``, its size) and stays in the unsent queue, in its place: from then on the
relay sends a refusal notice for it, which the router answers with a rejection to its
publisher. Once the broker acknowledged the notice the row is reported
(``reported_at``) and leaves the queue (``sent_at``); a notice the broker refuses as
well leaves the queue unreported, so it cannot hold back the rows behind it. Refused
rows are kept past the dedupe window for an operator to inspect.
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import sqlite3
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Final, NamedTuple, TypeVar

import orjson

from services.contracts.errors import PuenteError
from services.contracts.headers import KafkaHeaders
from services.runtime.rows import insert_rows

_SCHEMA: Final = """
CREATE TABLE IF NOT EXISTS outbox (
    seq INTEGER PRIMARY KEY AUTOINCREMENT,
    source TEXT NOT NULL,
    event_id TEXT NOT NULL,
    event_type TEXT NOT NULL,
    topic TEXT NOT NULL,
    key BLOB,
    value BLOB NOT NULL,
    headers BLOB NOT NULL,
    content_hash BLOB NOT NULL,
    accepted_at REAL NOT NULL,
    sent_at REAL,
    refused_at REAL,
    refusal TEXT,
    refused_bytes INTEGER,
    refused_limit INTEGER,
    reported_at REAL,
    UNIQUE (source, event_id)
);
CREATE INDEX IF NOT EXISTS outbox_unsent ON outbox (seq) WHERE sent_at IS NULL;
CREATE INDEX IF NOT EXISTS outbox_sent ON outbox (sent_at) WHERE sent_at IS NOT NULL;
"""
_INSERT: Final = (
    "INSERT INTO outbox (source, event_id, event_type, topic, key, value, headers,"
    " content_hash, accepted_at)"
)
_ON_CONFLICT: Final = "ON CONFLICT (source, event_id) DO NOTHING"
# Columns added after the first release, for outboxes created before them.
_ADDED: Final = (
    ("refused_at", "REAL"),
    ("refusal", "TEXT"),
    ("refused_bytes", "INTEGER"),
    ("refused_limit", "INTEGER"),
    ("reported_at", "REAL"),
)
_CHUNK: Final = 500  # event ids per lookup: under SQLite's host-parameter limit


class OutboxError(PuenteError):
    """The outbox database failed (disk full, I/O error); the request may be retried."""

    retriable = True


class OutboxFullError(OutboxError):
    """The outbox holds its limit of unsent events; the broker has been unreachable."""


class Outcome(enum.Enum):
    """What the outbox did with one event."""

    ACCEPTED = "accepted"
    DUPLICATE = "duplicate"
    CONFLICT = "conflict"


class Entry(NamedTuple):
    """One event ready to relay: the encoded record and where it goes.

    A named tuple: batch workers send entries back by pickle, and tuples are the
    cheapest objects to rebuild there.
    """

    source: str
    event_type: str
    event_id: str
    topic: str
    key: bytes | None
    value: bytes
    headers: bytes  # as stored: `encode_headers` of the Kafka headers
    content_hash: bytes


def encode_headers(headers: KafkaHeaders) -> bytes:
    """Kafka headers as the outbox stores them (JSON pairs of UTF-8 text)."""
    return orjson.dumps([[k, v.decode("utf-8")] for k, v in headers])


@dataclass(frozen=True, slots=True)
class Result:
    """The outcome of appending one entry; ``accepted_at`` is the original acceptance."""

    outcome: Outcome
    event_id: str
    accepted_at: float


@dataclass(frozen=True, slots=True)
class Refusal:
    """Why the broker refused a row for good: reason code, size, the limit if known."""

    reason: str
    size: int
    limit: int | None = None


@dataclass(frozen=True, slots=True)
class Pending:
    """An unsent row as the relay reads it (``refusal``: refused, its notice due)."""

    seq: int
    topic: str
    key: bytes | None
    value: bytes
    headers: KafkaHeaders
    accepted_at: float
    refusal: Refusal | None = None


_T = TypeVar("_T")
_Request = tuple[Sequence[Entry], "asyncio.Future[list[Result]]"]


class Outbox:
    """Append with group commit; read unsent rows in order; mark them sent."""

    def __init__(
        self, path: Path, *, limit: int, commit_wait_s: float = 0.0, group_max: int = 2000
    ) -> None:
        self.path = path
        self.limit = limit
        self._commit_wait = commit_wait_s
        self._group_max = group_max
        self._executor: ThreadPoolExecutor | None = None
        self._db: sqlite3.Connection | None = None
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._queued = 0
        self._writer: asyncio.Task[None] | None = None
        self.unsent_count = 0
        self.unreported_count = 0
        self.oldest_unsent_at: float | None = None
        self.appended = asyncio.Event()

    async def start(self) -> None:
        """Open (or create) the database and start the writer task."""
        self._executor = ThreadPoolExecutor(1, thread_name_prefix="puente-outbox")
        await self._run(self._open)
        self.unsent_count, self.oldest_unsent_at = await self._run(self._count_unsent)
        self.unreported_count = await self._run(self._count_unreported)
        self._writer = asyncio.create_task(self._write_loop(), name="outbox-writer")

    async def stop(self) -> None:
        """Commit what is queued, stop the writer and close the database."""
        if self._writer is not None:
            await self._queue.put(None)
            await self._writer
            self._writer = None
        if self._db is not None:
            await self._run(self._db.close)
            self._db = None
        if self._executor is not None:
            self._executor.shutdown(wait=True)
            self._executor = None

    async def append(self, entries: Sequence[Entry]) -> list[Result]:
        """Store ``entries`` durably; return one result per entry, in order."""
        if self.unsent_count + self._queued + len(entries) > self.limit:
            raise OutboxFullError(f"outbox holds {self.unsent_count} unsent events")
        future: asyncio.Future[list[Result]] = asyncio.get_running_loop().create_future()
        self._queued += len(entries)
        await self._queue.put((entries, future))
        return await future

    async def unsent(self, limit: int) -> list[Pending]:
        """The oldest ``limit`` unsent rows, in acceptance order."""
        rows = await self._run(self._read_unsent, limit)
        self.oldest_unsent_at = rows[0].accepted_at if rows else None
        return rows

    async def mark_sent(self, seqs: Sequence[int]) -> None:
        """Mark rows sent (after the broker acknowledged every one of them)."""
        done = await self._run(self._mark_sent, list(seqs))
        self.unsent_count = max(0, self.unsent_count - done)

    async def mark_refused(self, refusals: Mapping[int, Refusal]) -> int:
        """Note rows the broker refuses for good; return how many were new.

        They stay unsent: the relay sends their refusal notices in their place.
        """
        done = await self._run(self._mark_refused, dict(refusals))
        self.unreported_count += done
        return done

    async def mark_reported(self, seqs: Sequence[int]) -> None:
        """Mark refused rows reported (the broker acknowledged their notices)."""
        done = await self._run(self._mark_reported, list(seqs))
        self.unsent_count = max(0, self.unsent_count - done)
        self.unreported_count = max(0, self.unreported_count - done)

    async def give_up(self, seqs: Sequence[int]) -> None:
        """Take refused rows whose notice the broker refuses too out of the queue."""
        done = await self._run(self._mark_given_up, list(seqs))
        self.unsent_count = max(0, self.unsent_count - done)

    async def refused(self) -> list[tuple[int, str, str]]:
        """Every refused row: (seq, event id, reason), oldest first."""
        return await self._run(self._read_refused)

    async def unreported(self) -> list[int]:
        """The seqs of refused rows whose publisher was not told (yet), oldest first."""
        return await self._run(self._read_unreported)

    async def prune(self, older_than_s: float) -> int:
        """Delete sent rows older than ``older_than_s``; return how many."""
        return await self._run(self._prune, time.time() - older_than_s)

    def oldest_unsent_age(self) -> float:
        """Seconds since the oldest unsent event was accepted (0 when none)."""
        if self.unsent_count == 0 or self.oldest_unsent_at is None:
            return 0.0
        return max(0.0, time.time() - self.oldest_unsent_at)

    async def _run(self, fn: Callable[..., _T], *args: Any) -> _T:
        if self._executor is None:
            raise OutboxError("the outbox is not open")
        loop = asyncio.get_running_loop()
        try:
            return await loop.run_in_executor(self._executor, fn, *args)
        except sqlite3.Error as e:
            raise OutboxError(f"outbox database error: {type(e).__name__}: {e}") from e

    async def _write_loop(self) -> None:
        stopping = False
        while not stopping:
            first = await self._queue.get()
            if first is None:
                break
            if self._commit_wait:
                await asyncio.sleep(self._commit_wait)
            group = [first]
            count = len(first[0])
            while count < self._group_max and not self._queue.empty():
                item = self._queue.get_nowait()
                if item is None:
                    stopping = True
                    break
                group.append(item)
                count += len(item[0])
            await self._commit(group)

    async def _commit(self, group: list[_Request]) -> None:
        try:
            results = await self._run(self._write, [entries for entries, _ in group])
        except OutboxError as e:
            for entries, future in group:
                self._queued -= len(entries)
                if not future.done():
                    future.set_exception(e)
            return
        accepted = [r for rs in results for r in rs if r.outcome is Outcome.ACCEPTED]
        if accepted:
            self.unsent_count += len(accepted)
            if self.oldest_unsent_at is None:
                self.oldest_unsent_at = accepted[0].accepted_at
        for (entries, future), result in zip(group, results, strict=True):
            self._queued -= len(entries)
            if not future.done():
                future.set_result(result)
        self.appended.set()

    # --- below: runs on the outbox thread only ---

    def _open(self) -> None:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        db = sqlite3.connect(self.path, isolation_level=None, check_same_thread=False)
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=FULL")
        db.executescript(_SCHEMA)
        present = {row[1] for row in db.execute("PRAGMA table_info(outbox)")}
        for name, kind in _ADDED:
            if name not in present:
                db.execute(f"ALTER TABLE outbox ADD COLUMN {name} {kind}")
        if "reported_at" not in present:
            # Rows refused before refusals were reported: queued again, so their
            # publishers are told now rather than never.
            db.execute(
                "UPDATE outbox SET sent_at = NULL WHERE refused_at IS NOT NULL"
                " AND reported_at IS NULL"
            )
        self._db = db

    def _count_unsent(self) -> tuple[int, float | None]:
        count, oldest = (
            self._conn()
            .execute(
                "SELECT COUNT(*), MIN(accepted_at) FROM outbox WHERE sent_at IS NULL"
            )
            .fetchone()
        )
        return int(count), oldest

    def _count_unreported(self) -> int:
        (count,) = (
            self._conn()
            .execute(
                "SELECT COUNT(*) FROM outbox"
                " WHERE refused_at IS NOT NULL AND reported_at IS NULL"
            )
            .fetchone()
        )
        return int(count)

    def _conn(self) -> sqlite3.Connection:
        if self._db is None:
            raise OutboxError("the outbox is not open")
        return self._db

    @contextlib.contextmanager
    def _immediate(self) -> Iterator[sqlite3.Connection]:
        """One write transaction, taken at once (BEGIN IMMEDIATE), undone on error."""
        db = self._conn()
        db.execute("BEGIN IMMEDIATE")
        try:
            yield db
            db.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(sqlite3.Error):
                db.execute("ROLLBACK")
            raise

    def _write(self, groups: list[Sequence[Entry]]) -> list[list[Result]]:
        now = time.time()
        with self._immediate() as db:
            return self._insert_all(db, groups, now)

    @staticmethod
    def _insert_all(
        db: sqlite3.Connection, groups: list[Sequence[Entry]], now: float
    ) -> list[list[Result]]:
        """Insert the new entries with one statement; answer repeats from the table.

        The first of several entries with one (source, event id) in this write is
        inserted; the others are duplicates of it, or conflicts if they differ.
        """
        known = _stored(db, [e for entries in groups for e in entries])
        rows = []
        out = []
        for entries in groups:
            results = []
            for e in entries:
                stored = known.get((e.source, e.event_id))
                if stored is None:
                    known[(e.source, e.event_id)] = (e.content_hash, now)
                    rows.append(_row(e, now))
                    results.append(Result(Outcome.ACCEPTED, e.event_id, now))
                    continue
                digest, accepted_at = stored
                same = digest == e.content_hash
                outcome = Outcome.DUPLICATE if same else Outcome.CONFLICT
                results.append(Result(outcome, e.event_id, accepted_at))
            out.append(results)
        insert_rows(db, _INSERT, rows, _ON_CONFLICT)
        return out

    def _read_unsent(self, limit: int) -> list[Pending]:
        rows = self._conn().execute(
            "SELECT seq, topic, key, value, headers, accepted_at, refusal,"
            " refused_bytes, refused_limit FROM outbox"
            " WHERE sent_at IS NULL ORDER BY seq LIMIT ?",
            (limit,),
        )
        return [
            Pending(
                seq,
                topic,
                bytes(key) if key is not None else None,
                bytes(value),
                [(k, v.encode("utf-8")) for k, v in orjson.loads(headers)],
                accepted_at,
                None if why is None else Refusal(why, size or len(value), limit_),
            )
            for seq, topic, key, value, headers, accepted_at, why, size, limit_ in rows
        ]

    def _mark_sent(self, seqs: list[int]) -> int:
        now = time.time()
        with self._immediate() as db:
            # Relayed rows are mostly consecutive: one UPDATE per run of seqs.
            done = sum(
                db.execute(
                    "UPDATE outbox SET sent_at = ? WHERE seq BETWEEN ? AND ?"
                    " AND sent_at IS NULL",
                    (now, first, last),
                ).rowcount
                for first, last in _runs(seqs)
            )
        return int(done)

    def _mark_refused(self, refusals: dict[int, Refusal]) -> int:
        now = time.time()
        with self._immediate() as db:
            done = sum(
                db.execute(
                    "UPDATE outbox SET refused_at = ?, refusal = ?, refused_bytes = ?,"
                    " refused_limit = ? WHERE seq = ? AND sent_at IS NULL"
                    " AND refused_at IS NULL",
                    (now, why.reason, why.size, why.limit, seq),
                ).rowcount
                for seq, why in refusals.items()
            )
        return int(done)

    def _mark_reported(self, seqs: list[int]) -> int:
        return self._leave_queue(seqs, time.time())

    def _mark_given_up(self, seqs: list[int]) -> int:
        return self._leave_queue(seqs, None)

    def _leave_queue(self, seqs: list[int], reported_at: float | None) -> int:
        """Refused rows out of the unsent queue, reported at ``reported_at`` (or not)."""
        now = time.time()
        with self._immediate() as db:
            done = sum(
                db.execute(
                    "UPDATE outbox SET sent_at = ?, reported_at = ?"
                    " WHERE seq = ? AND sent_at IS NULL AND refused_at IS NOT NULL",
                    (now, reported_at, seq),
                ).rowcount
                for seq in seqs
            )
        return int(done)

    def _read_refused(self) -> list[tuple[int, str, str]]:
        rows = self._conn().execute(
            "SELECT seq, event_id, refusal FROM outbox"
            " WHERE refused_at IS NOT NULL ORDER BY seq"
        )
        return [(int(seq), str(event_id), str(why)) for seq, event_id, why in rows]

    def _read_unreported(self) -> list[int]:
        rows = self._conn().execute(
            "SELECT seq FROM outbox WHERE refused_at IS NOT NULL AND reported_at IS NULL"
            " ORDER BY seq"
        )
        return [int(seq) for (seq,) in rows]

    def _prune(self, before: float) -> int:
        db = self._conn()
        cursor = db.execute(
            "DELETE FROM outbox WHERE sent_at IS NOT NULL AND sent_at < ?"
            " AND refused_at IS NULL",
            (before,),
        )
        return int(cursor.rowcount)


def _runs(seqs: Sequence[int]) -> list[tuple[int, int]]:
    """``seqs`` as (first, last) runs of consecutive numbers: 1,2,3,7 -> (1,3), (7,7)."""
    runs: list[tuple[int, int]] = []
    for seq in sorted(set(seqs)):
        if runs and seq == runs[-1][1] + 1:
            runs[-1] = (runs[-1][0], seq)
        else:
            runs.append((seq, seq))
    return runs


def _stored(
    db: sqlite3.Connection, entries: Sequence[Entry]
) -> dict[tuple[str, str], tuple[bytes, float]]:
    """Content hash and acceptance time of the entries' ids already in the outbox."""
    by_source: dict[str, list[str]] = {}
    for e in entries:
        by_source.setdefault(e.source, []).append(e.event_id)
    found: dict[tuple[str, str], tuple[bytes, float]] = {}
    for source, ids in by_source.items():
        unique = list(dict.fromkeys(ids))
        for start in range(0, len(unique), _CHUNK):
            chunk = unique[start : start + _CHUNK]
            marks = ",".join("?" * len(chunk))
            # One index search per id: (source, event_id) is the unique key.
            query = (
                "SELECT event_id, content_hash, accepted_at FROM outbox"  # noqa: S608 - only placeholders
                f" WHERE source = ? AND event_id IN ({marks})"
            )
            for event_id, digest, accepted_at in db.execute(query, [source, *chunk]):
                found[(source, event_id)] = (bytes(digest), accepted_at)
    return found


def _row(e: Entry, now: float) -> tuple[Any, ...]:
    return (
        e.source,
        e.event_id,
        e.event_type,
        e.topic,
        e.key,
        e.value,
        e.headers,
        e.content_hash,
        now,
    )
