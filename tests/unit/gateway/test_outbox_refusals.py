"""Refused outbox rows: due as notices until reported, counted, kept (real SQLite)."""

from __future__ import annotations

import hashlib
import sqlite3
import uuid
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from services.contracts import headers
from services.gateway.outbox import Entry, Outbox, Pending, Refusal, encode_headers
from services.gateway.relay import notice_headers


def entry(size: int = 100) -> Entry:
    event_id = str(uuid.uuid4())
    value = b"\x01" * size
    return Entry(
        "dgme", "referral", event_id, "hub.in.dgme.referral", b"key", value,
        encode_headers([("ce_specversion", b"1.0"), ("ce_id", event_id.encode())]),
        hashlib.sha256(value).digest(),
    )  # fmt: skip


@pytest.fixture
async def outbox(tmp_path: Path) -> AsyncIterator[Outbox]:
    box = Outbox(tmp_path / "outbox.sqlite", limit=100)
    await box.start()
    yield box
    await box.stop()


async def test_a_refused_row_stays_due_with_its_refusal_until_its_notice_is_reported(
    outbox: Outbox,
) -> None:
    await outbox.append([entry(), entry(5000), entry()])
    first, big, last = await outbox.unsent(10)

    new = await outbox.mark_refused({big.seq: Refusal("too_large", 5042, 4096)})
    due = await outbox.unsent(10)
    before = (outbox.unsent_count, outbox.unreported_count)
    await outbox.mark_sent([first.seq, last.seq])
    await outbox.mark_reported([big.seq])

    assert new == 1
    assert [p.refusal for p in due] == [None, Refusal("too_large", 5042, 4096), None]
    assert before == (3, 1)
    assert (outbox.unsent_count, outbox.unreported_count) == (0, 0)
    assert await outbox.unsent(10) == []
    assert [seq for seq, _, _ in await outbox.refused()] == [big.seq]
    assert await outbox.unreported() == []


async def test_a_row_refused_again_is_counted_once(outbox: Outbox) -> None:
    await outbox.append([entry()])
    (row,) = await outbox.unsent(1)
    counts = [
        await outbox.mark_refused({row.seq: Refusal("too_large", 150)}) for _ in range(2)
    ]
    assert counts == [1, 0]
    assert outbox.unreported_count == 1


async def test_a_row_given_up_leaves_the_queue_unreported(outbox: Outbox) -> None:
    await outbox.append([entry(), entry()])
    refused, after = await outbox.unsent(10)
    await outbox.mark_refused({refused.seq: Refusal("too_large", 150)})
    await outbox.give_up([refused.seq])

    assert [p.seq for p in await outbox.unsent(10)] == [after.seq]
    assert await outbox.unreported() == [refused.seq]
    assert outbox.unreported_count == 1


async def test_marking_a_row_reported_takes_only_refused_rows(outbox: Outbox) -> None:
    await outbox.append([entry()])
    (row,) = await outbox.unsent(1)
    await outbox.mark_reported([row.seq])
    assert [p.seq for p in await outbox.unsent(1)] == [row.seq]


async def test_a_restarted_outbox_knows_its_refused_rows_still_due(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    box = Outbox(path, limit=100)
    await box.start()
    await box.append([entry(), entry()])
    refused, _ = await box.unsent(10)
    await box.mark_refused({refused.seq: Refusal("too_large", 150)})
    await box.stop()

    again = Outbox(path, limit=100)
    await again.start()
    try:
        due = await again.unsent(10)
        counts = (again.unsent_count, again.unreported_count)
    finally:
        await again.stop()

    assert counts == (2, 1)
    assert due[0].refusal == Refusal("too_large", 150)


async def test_rows_refused_before_refusals_were_reported_are_due_again(
    tmp_path: Path,
) -> None:
    # An outbox of the release that marked refused rows sent, telling no one.
    path = tmp_path / "outbox.sqlite"
    db = sqlite3.connect(path)
    db.executescript(
        """
        CREATE TABLE outbox (
            seq INTEGER PRIMARY KEY AUTOINCREMENT, source TEXT NOT NULL,
            event_id TEXT NOT NULL, event_type TEXT NOT NULL, topic TEXT NOT NULL,
            key BLOB, value BLOB NOT NULL, headers BLOB NOT NULL,
            content_hash BLOB NOT NULL, accepted_at REAL NOT NULL, sent_at REAL,
            refused_at REAL, refusal TEXT, UNIQUE (source, event_id)
        );
        INSERT INTO outbox VALUES (1, 'dgme', 'a', 'referral', 'hub.in.dgme.referral',
            NULL, x'0101', '[["ce_id","a"]]', x'00', 1.0, 2.0, NULL, NULL);
        INSERT INTO outbox VALUES (2, 'dgme', 'b', 'referral', 'hub.in.dgme.referral',
            NULL, x'010101', '[["ce_id","b"]]', x'01', 1.0, 2.0, 2.0, 'too_large');
        """
    )
    db.commit()
    db.close()

    box = Outbox(path, limit=100)
    await box.start()
    try:
        due = await box.unsent(10)
        unreported = box.unreported_count
    finally:
        await box.stop()

    assert [(p.seq, p.refusal) for p in due] == [(2, Refusal("too_large", 3))]
    assert unreported == 1


def test_a_notice_carries_the_rows_cloudevents_attributes_and_the_refusal() -> None:
    row = Pending(
        7,
        "hub.in.dgme.referral",
        b"key",
        b"\x01" * 10,
        [
            ("ce_specversion", b"1.0"),
            ("ce_id", b"e-1"),
            (headers.REFUSED, b"forged"),
            ("ce_type", b"referral"),
            ("content-type", b"application/avro"),
            (headers.DATASCHEMA, b"urn:puente:schema:0011223344556677"),
        ],
        1.0,
    )
    assert notice_headers(row, Refusal("too_large", 40123, 8192)) == [
        ("ce_specversion", b"1.0"),
        ("ce_id", b"e-1"),
        ("ce_type", b"referral"),
        (headers.REFUSED, b"too_large"),
        (headers.REFUSED_BYTES, b"40123"),
        (headers.REFUSED_LIMIT, b"8192"),
    ]
    unknown_limit = notice_headers(row, Refusal("too_large", 40123))
    assert headers.REFUSED_LIMIT not in dict(unknown_limit)
