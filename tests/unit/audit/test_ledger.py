"""The ledger file: append-only, deduplicated, positions in the same transaction."""

from __future__ import annotations

import dataclasses
import itertools
import sqlite3
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.chain import Prepared
from services.audit.ledger import Ledger, LedgerBusyError, LedgerError, Skipped
from services.contracts.catalog import Catalog
from tests.unit.audit.support import entry, many, prepared


def test_entries_are_numbered_from_one_and_each_links_to_the_one_before(
    ledger: Ledger,
) -> None:
    rows = list(ledger.rows())
    assert [r.seq for r in rows] == list(range(1, 11))
    assert all(b.prev_hash == a.hash for a, b in itertools.pairwise(rows))
    assert ledger.head().seq == 10
    assert ledger.head().hash == rows[-1].hash


def test_a_redelivered_audit_id_is_not_appended_twice(
    ledger_path: Path, catalog: Catalog
) -> None:
    datums = many(3)
    ledger = Ledger.open_writer(ledger_path)
    first = ledger.append([prepared(catalog, d) for d in datums], [], {("t", 0): 3})
    again = ledger.append(
        [prepared(catalog, datums[1]), prepared(catalog, datums[1])], [], {("t", 0): 5}
    )
    assert (first.appended, first.duplicates) == (3, 0)
    assert (again.appended, again.duplicates) == (0, 2)
    assert ledger.count() == 3
    assert ledger.positions() == {("t", 0): 5}
    ledger.close()


def test_a_failed_batch_leaves_neither_entries_nor_positions(
    ledger_path: Path, catalog: Catalog
) -> None:
    ledger = Ledger.open_writer(ledger_path)
    ledger.append([prepared(catalog, entry())], [], {("t", 0): 1})
    good = prepared(catalog, entry())
    broken = Prepared(
        good.canonical,
        dataclasses.replace(prepared(catalog, entry()).columns, event_type=None),  # type: ignore[arg-type]
    )
    with pytest.raises(LedgerError):
        ledger.append([good, broken], [], {("t", 0): 3})
    assert ledger.count() == 1
    assert ledger.positions() == {("t", 0): 1}
    ledger.close()


@pytest.mark.parametrize(
    "statement",
    [
        "UPDATE entries SET recipient = 'pnc' WHERE seq = 2",
        "DELETE FROM entries WHERE seq = 2",
        "UPDATE checkpoints SET seq = 3 WHERE seq = 4",
        "DELETE FROM checkpoints",
    ],
)
def test_the_file_refuses_updates_and_deletes_of_entries_and_checkpoints(
    ledger: Ledger, statement: str
) -> None:
    with pytest.raises(sqlite3.IntegrityError, match="append-only"):
        ledger.db.execute(statement)


def test_a_second_writer_is_refused_while_the_first_holds_the_ledger(
    ledger: Ledger, ledger_path: Path
) -> None:
    with pytest.raises(LedgerBusyError):
        Ledger.open_writer(ledger_path)


def test_a_reader_opens_beside_the_writer_and_sees_committed_entries(
    ledger: Ledger, ledger_path: Path
) -> None:
    reader = Ledger.open_reader(ledger_path)
    assert reader.count() == 10
    assert reader.ledger_id == ledger.ledger_id
    reader.close()


def test_opening_a_missing_ledger_for_reading_fails_clearly(tmp_path: Path) -> None:
    with pytest.raises(LedgerError, match="no ledger at"):
        Ledger.open_reader(tmp_path / "nothing.sqlite")


def test_skipped_records_keep_their_digest_not_their_bytes(
    ledger_path: Path,
) -> None:
    ledger = Ledger.open_writer(ledger_path)
    skipped = Skipped("hub.audit", 0, 7, "BadMagicError: ...", "ab" * 32)
    ledger.append([], [skipped], {("hub.audit", 0): 8})
    row = ledger.select('SELECT "offset", reason, value_sha256 FROM skipped')
    assert row == [(7, "BadMagicError: ...", "ab" * 32)]
    assert ledger.skipped_count() == 1
    assert ledger.count() == 0
    ledger.close()


def test_checkpoints_are_stored_with_the_key_that_signed_them(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    points = ledger.checkpoints()
    assert [c.seq for c in points] == [4, 10]
    assert all(c.valid_under(c.public_key) for c in points)
    assert list(ledger.signing_keys().values()) == [points[0].public_key]
    assert [c.seq for c in ledger.checkpoints(unpublished_only=True)] == [4, 10]
    ledger.mark_published(4)
    assert [c.seq for c in ledger.checkpoints(unpublished_only=True)] == [10]


def test_the_ledger_id_stays_the_same_across_reopenings(
    ledger_path: Path,
) -> None:
    first = Ledger.open_writer(ledger_path)
    ledger_id = first.ledger_id
    first.close()
    again = Ledger.open_writer(ledger_path)
    assert again.ledger_id == ledger_id
    again.close()
