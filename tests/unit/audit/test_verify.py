"""`verify` finds each kind of tampering and names the first broken place."""

from __future__ import annotations

import base64
import json
from pathlib import Path

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from typer.testing import CliRunner

from services.audit.api import verify_ledger
from services.audit.checkpoints import sign
from services.audit.cli import app
from services.audit.keys import key_id, public_pem, raw_public
from services.audit.ledger import Ledger
from services.runtime import broker
from tests.unit.audit.support import T0
from tests.unit.audit.tamper import entry_bytes, rewrite_and_rehash, tamper

runner = CliRunner()


@pytest.fixture(autouse=True)
def pinned_by_configuration(
    key: Ed25519PrivateKey, state_dir: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """The CLI verifies with the signing key's public half, from configuration."""
    monkeypatch.setenv("PUENTE_STATE_DIR", str(state_dir))
    monkeypatch.setenv(
        "PUENTE_AUDIT_VERIFY_KEY", base64.b64encode(raw_public(key)).decode()
    )
    for name in ("PUENTE_AUDIT_VERIFY_KEY_FILE", "PUENTE_AUDIT_WITNESS_FILE"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def pinned(key: Ed25519PrivateKey) -> dict[str, bytes]:
    """The ledger's signing key, pinned."""
    return {key_id(raw_public(key)): raw_public(key)}


def closed(ledger: Ledger) -> Path:
    ledger.close()
    return ledger.path


def test_an_untouched_ledger_verifies(ledger: Ledger, pinned: dict[str, bytes]) -> None:
    result = verify_ledger(closed(ledger), pinned)
    assert result.ok
    assert (result.entries, result.head_seq, result.checkpoints) == (10, 10, 2)
    assert result.uncovered_entries == 0


def test_a_flipped_byte_is_a_hash_mismatch_at_that_entry(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    data = bytearray(entry_bytes(path, 5))
    data[40] ^= 0x01
    tamper(path, ("UPDATE entries SET entry = ? WHERE seq = 5", (bytes(data),)))
    result = verify_ledger(path, pinned)
    assert not result.ok
    assert result.first_problem is not None
    assert (result.first_problem.seq, result.first_problem.kind) == (5, "hash_mismatch")
    assert [p.kind for p in result.problems] == ["hash_mismatch"]


def test_a_deleted_row_is_a_gap_in_seq(ledger: Ledger, pinned: dict[str, bytes]) -> None:
    path = closed(ledger)
    tamper(path, ("DELETE FROM entries WHERE seq = 6", ()))
    first = verify_ledger(path, pinned).first_problem
    assert first is not None
    assert (first.seq, first.kind) == (7, "seq_gap")
    assert "expected seq 6" in first.detail


def test_two_reordered_rows_break_the_prev_hash_link(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    tamper(
        path,
        ("UPDATE entries SET seq = -1 WHERE seq = 3", ()),
        ("UPDATE entries SET seq = 3 WHERE seq = 4", ()),
        ("UPDATE entries SET seq = 4 WHERE seq = -1", ()),
    )
    result = verify_ledger(path, pinned)
    assert result.first_problem is not None
    assert (result.first_problem.seq, result.first_problem.kind) == (
        3,
        "prev_link_broken",
    )
    assert ("checkpoint", 4, "checkpoint_head_mismatch") in {
        (p.on, p.seq, p.kind) for p in result.problems
    }


def test_a_forged_checkpoint_head_has_an_invalid_signature(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    tamper(path, ("UPDATE checkpoints SET head_hash = ? WHERE seq = 4", (bytes(32),)))
    result = verify_ledger(path, pinned)
    kinds = {(p.seq, p.kind) for p in result.problems}
    assert (4, "signature_invalid") in kinds
    assert result.first_problem is not None
    assert result.first_problem.on == "checkpoint"


def test_a_rehashed_rewrite_is_caught_by_the_signed_checkpoint(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    # Entry 2 went to minsal; hide that, keeping bytes, columns and chain consistent.
    rewrite_and_rehash(path, 2, lambda b: b.replace(b'"minsal"', b'"pnc"'))
    tamper(path, ("UPDATE entries SET recipient = 'pnc' WHERE seq = 2", ()))
    result = verify_ledger(path, pinned)
    assert [(p.on, p.seq, p.kind) for p in result.problems] == [
        ("checkpoint", 4, "checkpoint_head_mismatch"),
        ("checkpoint", 10, "checkpoint_head_mismatch"),
    ]


def test_a_ledger_re_signed_with_a_new_key_fails_the_default_verify(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    ledger_id = Ledger.open_reader(path).ledger_id
    rewrite_and_rehash(path, 2, lambda b: b.replace(b'"minsal"', b'"pnc"'))
    forger = Ed25519PrivateKey.generate()
    reader = Ledger.open_reader(path)
    heads = {r.seq: r.hash for r in reader.rows()}
    reader.close()
    forged = [sign(forger, ledger_id, seq, heads[seq], T0) for seq in (4, 10)]
    tamper(
        path,
        ("UPDATE entries SET recipient = 'pnc' WHERE seq = 2", ()),
        ("DELETE FROM checkpoints", ()),
        ("DELETE FROM signing_keys", ()),
        *[
            ("INSERT INTO checkpoints (seq, head_hash, signed_at, key_id, signature) "
             "VALUES (?, ?, ?, ?, ?)", (c.seq, c.head, c.time, c.key_id, c.signature))
            for c in forged
        ],
        ("INSERT INTO signing_keys VALUES (?, ?, 'x')",
         (forged[0].key_id, forged[0].public_key)),
    )  # fmt: skip
    # The key stored in the file is the forger's: the default verify does not use it.
    result = runner.invoke(app, ["verify", "--ledger", str(path)])
    assert result.exit_code == 1, result.output
    assert "first broken: checkpoint 4: unknown_key" in result.output
    found = verify_ledger(path, pinned)
    assert [(p.seq, p.kind) for p in found.problems] == [
        (4, "unknown_key"),
        (10, "unknown_key"),
    ]


def test_query_columns_changed_without_the_bytes_are_caught(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    tamper(path, ("UPDATE entries SET recipient = 'pnc' WHERE seq = 8", ()))
    first = verify_ledger(path, pinned).first_problem
    assert first is not None
    assert (first.seq, first.kind) == (8, "columns_mismatch")
    assert "recipient" in first.detail


def test_entries_cut_off_after_a_checkpoint_are_caught(
    ledger: Ledger, pinned: dict[str, bytes]
) -> None:
    path = closed(ledger)
    tamper(path, ("DELETE FROM entries WHERE seq > 8", ()))
    result = verify_ledger(path, pinned)
    assert result.first_problem is not None
    assert (result.first_problem.seq, result.first_problem.kind) == (
        10,
        "checkpoint_beyond_chain",
    )


def test_the_cli_verify_exits_0_and_prints_the_key_on_an_intact_ledger(
    ledger: Ledger, key: Ed25519PrivateKey
) -> None:
    result = runner.invoke(app, ["verify", "--ledger", str(closed(ledger))])
    assert result.exit_code == 0, result.output
    assert "OK" in result.output
    assert key_id(raw_public(key)) in result.output


def test_the_cli_verify_exits_1_naming_the_first_broken_entry(ledger: Ledger) -> None:
    path = closed(ledger)
    data = bytearray(entry_bytes(path, 5))
    data[10] ^= 0x20
    tamper(path, ("UPDATE entries SET entry = ? WHERE seq = 5", (bytes(data),)))
    result = runner.invoke(app, ["verify", "--ledger", str(path)])
    assert result.exit_code == 1
    assert "first broken: entry 5: hash_mismatch" in result.output
    as_json = runner.invoke(app, ["verify", "--ledger", str(path), "--json"])
    assert as_json.exit_code == 1
    assert json.loads(as_json.output)["first_problem"]["seq"] == 5


def test_the_cli_verify_checks_against_a_pinned_public_key_file(
    ledger: Ledger, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = closed(ledger)
    right = tmp_path / "right.pem"
    right.write_text(public_pem(raw_public(key)))
    wrong = tmp_path / "wrong.pem"
    wrong.write_text(public_pem(raw_public(Ed25519PrivateKey.generate())))
    ok = runner.invoke(app, ["verify", "--ledger", str(path), "--public-key", str(right)])
    assert ok.exit_code == 0, ok.output
    assert "pinned" in ok.output
    bad = runner.invoke(
        app, ["verify", "--ledger", str(path), "--public-key", str(wrong)]
    )
    assert bad.exit_code == 1
    assert "unknown_key" in bad.output


def test_the_cli_verify_of_a_missing_ledger_fails_clearly(tmp_path: Path) -> None:
    result = runner.invoke(app, ["verify", "--ledger", str(tmp_path / "none.sqlite")])
    assert result.exit_code == 1
    assert "no ledger at" in result.output


def test_the_cli_prints_the_stored_public_key_as_pem_for_pinning(
    ledger: Ledger, key: Ed25519PrivateKey, tmp_path: Path
) -> None:
    path = closed(ledger)
    result = runner.invoke(app, ["public-key", "--ledger", str(path)])
    assert result.exit_code == 0, result.output
    assert public_pem(raw_public(key)) in result.output
    pinned = tmp_path / "pinned.pem"
    pinned.write_text(result.output)
    check = runner.invoke(
        app, ["verify", "--ledger", str(path), "--public-key", str(pinned)]
    )
    assert check.exit_code == 0, check.output


def test_the_cli_finds_the_ledger_puente_up_writes_on_the_embedded_broker(
    ledger: Ledger, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    state = tmp_path / "state"
    embedded = broker.embedded_ledger(state)
    embedded.parent.mkdir(parents=True)
    closed(ledger).rename(embedded)
    monkeypatch.setenv("PUENTE_STATE_DIR", str(state))
    monkeypatch.delenv("PUENTE_AUDIT_LEDGER_PATH", raising=False)
    result = runner.invoke(app, ["verify"])
    assert result.exit_code == 0, result.output
    assert f"using the ledger of `puente up` on the embedded broker: {embedded}" in (
        result.output
    )
