"""A ledger cut back, emptied, replaced or rewritten is caught by heads kept outside it.

Each attack is one an insider with write access to the ledger file can make and
that `puente audit verify` reported OK before heads were witnessed outside the
ledger and keys pinned by configuration.
"""

from __future__ import annotations

import base64
import os
import sqlite3
import stat
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from prometheus_client import CollectorRegistry
from typer.testing import CliRunner

from services.audit import witness
from services.audit.api import ApiConfig, audit_app, verify_ledger
from services.audit.app import rotate_if_needed
from services.audit.checkpoints import CHECKPOINT_SCHEMA, Schedule, sign
from services.audit.cli import app
from services.audit.credentials import CredentialStore, Role
from services.audit.intake import Checkpointer
from services.audit.keys import key_id, raw_public
from services.audit.ledger import Ledger
from services.audit.metrics import AuditMetrics
from services.audit.rotation import sign_rotation
from services.audit.settings import AuditSettings
from services.audit.trust import witness_anchors
from services.contracts.catalog import Catalog
from tests.unit.audit.support import many, prepared
from tests.unit.audit.tamper import rewrite_and_rehash, tamper

runner = CliRunner()
BATCHES = (4, 6, 2)  # heads at seq 4, 10 and 12
CHECKPOINTED = (0, 1)  # checkpoints after the first two batches: seq 4 and 10


@pytest.fixture
def witness_file(tmp_path: Path) -> Path:
    """The witness, outside the ledger's folder."""
    return tmp_path / "elsewhere" / "witness.jsonl"


@pytest.fixture(autouse=True)
def configured(
    key: Ed25519PrivateKey,
    state_dir: Path,
    witness_file: Path,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    """The operator's configuration: pinned key and witness file."""
    monkeypatch.setenv("PUENTE_STATE_DIR", str(state_dir))
    monkeypatch.setenv(
        "PUENTE_AUDIT_VERIFY_KEY", base64.b64encode(raw_public(key)).decode()
    )
    monkeypatch.setenv("PUENTE_AUDIT_WITNESS_FILE", str(witness_file))
    monkeypatch.delenv("PUENTE_AUDIT_VERIFY_KEY_FILE", raising=False)


def checkpointer(
    ledger: Ledger, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> Checkpointer:
    return Checkpointer(
        ledger,
        key,
        Schedule(every=1000, seconds=3600),
        catalog.get(CHECKPOINT_SCHEMA, 1),
        AuditMetrics(CollectorRegistry()),
        witness=witness_file,
    )


def run_service(
    path: Path,
    catalog: Catalog,
    key: Ed25519PrivateKey,
    witness_file: Path,
    batches: Sequence[int] = BATCHES,
    checkpointed: Sequence[int] = CHECKPOINTED,
) -> Path:
    """Append batches as the service does: witness each head, checkpoint some."""
    witness_file.parent.mkdir(exist_ok=True)
    ledger = Ledger.open_writer(path)
    signer = checkpointer(ledger, catalog, key, witness_file)
    datums = many(sum(batches))
    done = 0
    for number, size in enumerate(batches):
        batch = [prepared(catalog, d) for d in datums[done : done + size]]
        done += size
        result = ledger.append(batch, [], {("hub.audit", 0): done})
        signer.witness_head(result.head)
        if number in checkpointed:
            signer.take()
    ledger.close()
    return path


def verify_cli(path: Path) -> tuple[int, str]:
    result = runner.invoke(app, ["verify", "--ledger", str(path)])
    return result.exit_code, result.output


def test_an_intact_ledger_verifies_against_its_witness(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    code, output = verify_cli(path)
    assert code == 0, output
    assert "anchored: 5 signed heads outside the ledger, the newest at seq 12" in output
    kinds = [k for _, k in witness.read(witness_file).heads]
    assert kinds == ["head", "checkpoint", "head", "checkpoint", "head"]


def test_entries_cut_past_the_last_checkpoint_are_reported_as_truncated(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    tamper(path, ("DELETE FROM entries WHERE seq > 10", ()))
    code, output = verify_cli(path)
    assert code == 1
    assert "first broken: ledger 10: truncated" in output
    assert "the ledger ends at seq 10, but the witness file holds a head at seq 12" in (
        output
    )
    assert "2 entries were cut from its end" in output


def test_entries_cut_with_the_checkpoints_covering_them_are_a_rollback(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    tamper(
        path,
        ("DELETE FROM entries WHERE seq > 4", ()),
        ("DELETE FROM checkpoints WHERE seq > 4", ()),
    )
    code, output = verify_cli(path)
    assert code == 1
    assert "first broken: ledger 4: rolled_back" in output
    assert "its checkpoints end at seq 4" in output
    assert "checkpoints up to seq 10: 8 entries and their checkpoints are gone" in output


def test_every_disclosure_to_one_institution_cut_out_is_caught(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    # Remove minsal's entries, re-chain the rest and drop the checkpoints that
    # no longer match: the ledger is consistent in itself.
    tamper(
        path,
        ("DELETE FROM entries WHERE recipient = 'minsal'", ()),
        ("DELETE FROM checkpoints", ()),
    )
    _renumber(path)
    result = verify_ledger(path, _pinned(key), witness_anchors(witness_file)[0])
    assert result.entries == 6
    assert [(p.seq, p.kind) for p in result.problems] == [
        (4, "forked"),
        (6, "rolled_back"),
    ]
    assert not [p for p in result.problems if p.on == "entry"]


def test_an_emptied_ledger_is_caught(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    tamper(
        path,
        ("DELETE FROM entries", ()),
        ("DELETE FROM checkpoints", ()),
        ("DELETE FROM signing_keys", ()),
    )
    code, output = verify_cli(path)
    assert code == 1
    assert "first broken: ledger 0: rolled_back" in output
    assert "the ledger is empty and its checkpoints end nowhere" in output


def test_a_ledger_replaced_by_a_fresh_one_is_caught(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    for leftover in path.parent.iterdir():
        leftover.unlink()
    Ledger.open_writer(path).close()
    code, output = verify_cli(path)
    assert code == 1
    assert "ledger_replaced" in output


def test_a_rewrite_after_the_last_checkpoint_is_a_fork_from_the_witnessed_head(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    # Entry 12 went to minsal; it is past the last checkpoint, only witnessed.
    rewrite_and_rehash(path, 12, lambda b: b.replace(b'"minsal"', b'"pnc"'))
    tamper(path, ("UPDATE entries SET recipient = 'pnc' WHERE seq = 12", ()))
    code, output = verify_cli(path)
    assert code == 1
    assert "first broken: ledger 12: forked" in output


def test_a_forged_witness_line_is_reported_not_trusted(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    ledger = Ledger.open_reader(path)
    ledger_id, head = ledger.ledger_id, ledger.head()
    ledger.close()
    forger = Ed25519PrivateKey.generate()
    # A head far past the ledger's end, signed by someone else.
    forged = sign(forger, ledger_id, 99, head.hash, datetime.now(UTC))
    witness.append(witness_file, witness.head_line(forged, "head"))
    result = verify_ledger(path, _pinned(key), witness_anchors(witness_file)[0])
    assert [(p.seq, p.kind) for p in result.problems] == [(99, "anchor_untrusted")]


def test_a_new_key_vouched_for_by_the_previous_one_verifies(
    ledger_path: Path,
    catalog: Catalog,
    key: Ed25519PrivateKey,
    witness_file: Path,
    tmp_path: Path,
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file, (4, 6), (0, 1))
    new = Ed25519PrivateKey.generate()
    previous = tmp_path / "previous.key"
    previous.write_bytes(base64.b64encode(key.private_bytes_raw()))
    settings = AuditSettings(
        previous_signing_key_file=previous, witness_file=witness_file
    )
    ledger = Ledger.open_writer(path)
    rotation = rotate_if_needed(ledger, new, settings)
    assert rotation is not None
    assert rotate_if_needed(ledger, new, settings) is None  # once only
    signer = checkpointer(ledger, catalog, new, witness_file)
    datums = many(12)[10:]
    result = ledger.append(
        [prepared(catalog, d) for d in datums], [], {("hub.audit", 0): 12}
    )
    signer.witness_head(result.head)
    signer.take()
    ledger.close()

    code, output = verify_cli(path)  # pinned: the previous key only
    assert code == 0, output
    assert key_id(raw_public(new)) in output


def test_a_rotation_signed_by_an_untrusted_key_is_refused(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file, (4, 6), (0, 1))
    forger = Ed25519PrivateKey.generate()
    ledger = Ledger.open_writer(path)
    # The forger vouches for itself; its checkpoint must not be trusted.
    ledger.add_rotation(
        sign_rotation(forger, raw_public(forger), ledger.ledger_id, 10, datetime.now(UTC))
    )
    ledger.close()
    tamper(path, ("UPDATE checkpoints SET key_id = 'x' WHERE seq = 10", ()))
    result = verify_ledger(path, _pinned(key), witness_anchors(witness_file)[0])
    kinds = [(p.seq, p.kind) for p in result.problems]
    assert (10, "key_rotation_refused") in kinds
    assert (10, "unknown_key") in kinds


def test_the_ledger_and_the_witness_are_readable_by_their_owner_only(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    old = os.umask(0o022)
    try:
        path = run_service(ledger_path, catalog, key, witness_file)
    finally:
        os.umask(old)
    for file in (path, witness_file, path.parent / f"{path.name}.lock"):
        assert stat.S_IMODE(file.stat().st_mode) == 0o600, file
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700


def _pinned(key: Ed25519PrivateKey) -> dict[str, bytes]:
    return {key_id(raw_public(key)): raw_public(key)}


def _renumber(path: Path) -> None:
    """Renumber the remaining entries 1, 2, ... and re-chain them (an insider's edit)."""
    db = sqlite3.connect(path)
    seqs = [s for (s,) in db.execute("SELECT seq FROM entries ORDER BY seq")]
    db.close()
    tamper(
        path,
        *[
            ("UPDATE entries SET seq = ? WHERE seq = ?", (-n, old))
            for n, old in enumerate(seqs, start=1)
        ],
        ("UPDATE entries SET seq = -seq", ()),
    )
    rewrite_and_rehash(path, 0, lambda b: b)


def test_a_ledger_written_before_rotations_existed_still_verifies(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    tamper(path, ("DROP TABLE key_rotations", ()))
    result = verify_ledger(path, _pinned(key), witness_anchors(witness_file)[0])
    assert result.ok, result.problems


async def test_the_api_verify_uses_the_pinned_key_and_the_witness(
    ledger_path: Path, catalog: Catalog, key: Ed25519PrivateKey, witness_file: Path
) -> None:
    path = run_service(ledger_path, catalog, key, witness_file)
    credentials = path.parent / "credentials.sqlite"
    store = CredentialStore(credentials)
    _, token = store.create(Role.OVERSIGHT)
    store.close()
    config = ApiConfig(path, credentials, _pinned(key), witness_file)
    api = audit_app(config, CollectorRegistry(), lambda: {"ok": True})
    transport = httpx.ASGITransport(app=api)
    bearer = {"Authorization": f"Bearer {token}"}
    async with httpx.AsyncClient(
        transport=transport, base_url="http://audit", headers=bearer
    ) as client:
        intact = (await client.get("/v1/verify")).json()
        tamper(path, ("DELETE FROM entries WHERE seq > 10", ()))
        cut = (await client.get("/v1/verify")).json()
    assert intact["ok"] is True
    assert intact["newest_anchor"]["seq"] == 12
    assert cut["ok"] is False
    assert (cut["first_problem"]["seq"], cut["first_problem"]["kind"]) == (
        10,
        "truncated",
    )
