"""Tokens, outbox, cursors and the CLI, without HTTP."""

from __future__ import annotations

import hashlib
import sqlite3
from pathlib import Path

import pytest
from typer.testing import CliRunner

from services.contracts.errors import InvalidIdError
from services.gateway.cli import app as cli
from services.gateway.deliveries import CursorError, decode_cursor, encode_cursor
from services.gateway.outbox import (
    Entry,
    Outbox,
    OutboxFullError,
    Outcome,
    _runs,
    encode_headers,
)
from services.gateway.tokens import TokenNotFoundError, TokenStore, institution_of


def test_a_token_names_its_institution_and_only_its_hash_is_stored(
    tmp_path: Path,
) -> None:
    store = TokenStore(tmp_path / "tokens.sqlite")
    info, token = store.create("rree_vmdmh")

    assert token.startswith("pte_rree_vmdmh_")
    assert institution_of(token) == "rree_vmdmh"
    assert store.authenticate(token) == "rree_vmdmh"
    dump = "\n".join(sqlite3.connect(tmp_path / "tokens.sqlite").iterdump())
    assert token.rsplit("_", 1)[1] not in dump
    stored = (
        sqlite3.connect(tmp_path / "tokens.sqlite")
        .execute("SELECT hash FROM tokens")
        .fetchone()[0]
    )
    assert stored == hashlib.sha256(token.encode()).digest()
    assert info.active


def test_a_token_of_one_institution_relabelled_as_another_is_refused(
    tmp_path: Path,
) -> None:
    store = TokenStore(tmp_path / "t.sqlite")
    _, token = store.create("dgme")
    store.create("minsal")

    assert store.authenticate(token.replace("pte_dgme_", "pte_minsal_")) is None


def test_revoking_is_idempotent_and_unknown_ids_are_an_error(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "t.sqlite")
    info, token = store.create("dgme")

    first = store.revoke(info.id)
    second = store.revoke(info.id)

    assert first.revoked_at == second.revoked_at is not None
    assert store.authenticate(token) is None
    with pytest.raises(TokenNotFoundError):
        store.revoke("nothere")


def test_a_malformed_institution_id_gets_no_token(tmp_path: Path) -> None:
    with pytest.raises(InvalidIdError):
        TokenStore(tmp_path / "t.sqlite").create("DGME")


def test_the_cli_creates_lists_and_revokes_without_ever_listing_the_token(
    tmp_path: Path,
) -> None:
    store = str(tmp_path / "t.sqlite")
    runner = CliRunner()

    created = runner.invoke(
        cli, ["token", "create", "--institution", "dgme", "--store", store]
    )
    token = created.stdout.strip().splitlines()[-1]
    listed = runner.invoke(cli, ["token", "list", "--store", store])
    token_id = TokenStore(Path(store)).list()[0].id
    revoked = runner.invoke(cli, ["token", "revoke", token_id, "--store", store])
    missing = runner.invoke(cli, ["token", "revoke", "nothere", "--store", store])
    bad = runner.invoke(
        cli, ["token", "create", "--institution", "Bad!", "--store", store]
    )
    stranger = runner.invoke(
        cli, ["token", "create", "--institution", "nobody_here", "--store", store]
    )
    hub_service = runner.invoke(
        cli, ["token", "create", "--institution", "hub_referrals", "--store", store]
    )

    assert created.exit_code == 0
    assert token.startswith("pte_dgme_")
    assert listed.exit_code == 0
    assert token_id in listed.stdout
    assert token not in listed.stdout
    assert revoked.exit_code == 0
    assert TokenStore(Path(store)).authenticate(token) is None
    assert missing.exit_code == 1
    assert bad.exit_code == 1
    assert stranger.exit_code == 1
    assert "names no institution" in stranger.stderr
    assert hub_service.exit_code == 1
    assert "hub's own services" in hub_service.stderr


def entry(event_id: str, value: bytes = b"v") -> Entry:
    return Entry(
        "dgme", "referral", event_id, "hub.in.dgme.referral", b"k", value,
        encode_headers([("ce_id", event_id.encode())]), hashlib.sha256(value).digest(),
    )  # fmt: skip


async def test_the_outbox_keeps_unsent_rows_in_order_across_a_restart(
    tmp_path: Path,
) -> None:
    path = tmp_path / "outbox.sqlite"
    outbox = Outbox(path, limit=100)
    await outbox.start()
    await outbox.append([entry("a"), entry("b")])
    await outbox.append([entry("c")])
    first = await outbox.unsent(1)
    await outbox.mark_sent([first[0].seq])
    await outbox.stop()

    reopened = Outbox(path, limit=100)
    await reopened.start()
    rows = await reopened.unsent(10)
    await reopened.stop()

    assert [r.headers[0][1] for r in rows] == [b"b", b"c"]
    assert reopened.unsent_count == 2


async def test_the_outbox_tells_duplicates_from_conflicts(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", limit=100)
    await outbox.start()
    (first,) = await outbox.append([entry("a")])
    same, other = await outbox.append([entry("a"), entry("a", b"changed")])
    await outbox.stop()

    assert first.outcome is Outcome.ACCEPTED
    assert same.outcome is Outcome.DUPLICATE
    assert same.accepted_at == first.accepted_at
    assert other.outcome is Outcome.CONFLICT


async def test_the_outbox_refuses_past_its_limit_of_unsent_rows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", limit=2)
    await outbox.start()
    await outbox.append([entry("a"), entry("b")])
    with pytest.raises(OutboxFullError):
        await outbox.append([entry("c")])
    await outbox.mark_sent([r.seq for r in await outbox.unsent(10)])
    (result,) = await outbox.append([entry("c")])
    await outbox.stop()

    assert result.outcome is Outcome.ACCEPTED


async def test_pruning_forgets_only_sent_rows(tmp_path: Path) -> None:
    outbox = Outbox(tmp_path / "o.sqlite", limit=10)
    await outbox.start()
    await outbox.append([entry("a"), entry("b")])
    (row,) = await outbox.unsent(1)
    await outbox.mark_sent([row.seq])
    pruned = await outbox.prune(older_than_s=-1)
    left = await outbox.unsent(10)
    await outbox.stop()

    assert pruned == 1
    assert len(left) == 1


def test_a_cursor_round_trips_and_garbage_is_refused() -> None:
    assert decode_cursor(encode_cursor({1: 5, 0: 3})) == {0: 3, 1: 5}
    assert decode_cursor(None) == {}
    for bad in ["!!", "eyJhIjogMX0", encode_cursor({0: 1}) + "AAAA", "x" * 5000]:
        with pytest.raises(CursorError):
            decode_cursor(bad)


def test_sent_rows_are_marked_in_runs_of_consecutive_seqs() -> None:
    assert _runs([7, 1, 3, 2, 2, 9, 8]) == [(1, 3), (7, 9)]
    assert _runs([]) == []
