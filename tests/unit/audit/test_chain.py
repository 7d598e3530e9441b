"""Canonical bytes and chain links, recomputable by an auditor with other tools."""

from __future__ import annotations

import copy
import hashlib
import json
import sqlite3

import pytest
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from services.audit import chain
from services.audit.ledger import Ledger
from services.contracts.catalog import Catalog, make_entry
from tests.unit.audit.support import entry, prepared


def test_canonical_bytes_are_sorted_compact_utf8_json_of_natural_json(
    catalog: Catalog,
) -> None:
    datum = entry(recipient="conapina")
    datum["withheld_reason"] = None
    got = prepared(catalog, datum).canonical
    natural = {
        **{
            k: v
            for k, v in datum.items()
            if k not in ("audit_id", "event_id", "decided_at")
        },
        "audit_id": str(datum["audit_id"]),
        "event_id": str(datum["event_id"]),
        "decided_at": "2025-03-01T12:00:00.000Z",
    }
    expected = json.dumps(
        natural, sort_keys=True, separators=(",", ":"), ensure_ascii=False
    )
    assert got == expected.encode("utf-8")
    assert b'"subject_key":"k1:' in got
    assert b'"withheld_reason":null' in got


def test_the_first_hash_is_sha256_of_32_zero_bytes_and_the_entry(
    ledger: Ledger, catalog: Catalog
) -> None:
    rows = list(ledger.rows())
    assert rows[0].prev_hash == bytes(32)
    assert rows[0].hash == hashlib.sha256(bytes(32) + rows[0].entry).digest()
    assert rows[1].hash == hashlib.sha256(rows[0].hash + rows[1].entry).digest()


def test_the_columns_are_read_from_the_entry(catalog: Catalog) -> None:
    datum = entry(recipient="minsal", view="PSEUDO", subject_key=None)
    columns = prepared(catalog, datum).columns
    assert columns.recipient == "minsal"
    assert columns.view == "PSEUDO"
    assert columns.subject_key is None
    assert columns.audit_id == str(datum["audit_id"])
    assert columns.decided_at == "2025-03-01T12:00:00.000Z"


def test_an_audit_entry_schema_with_personal_data_is_not_admissible(
    catalog: Catalog,
) -> None:
    schema = copy.deepcopy(catalog.get("audit_entry", 1).schema)
    schema["fields"].append(
        {"name": "full_name", "type": "string", "sensitivity": "DIRECT_IDENTIFIER"}
    )
    with pytest.raises(chain.NotAnAuditEntryError, match="full_name"):
        chain.check_admissible(make_entry("audit_entry", 2, schema))


def test_a_record_of_another_type_is_not_an_audit_entry(catalog: Catalog) -> None:
    with pytest.raises(chain.NotAnAuditEntryError, match="rejection"):
        chain.check_admissible(catalog.get("rejection", 1))


def test_the_hub_audit_entry_schema_is_admissible(catalog: Catalog) -> None:
    chain.check_admissible(catalog.get("audit_entry", 1))


def test_an_auditor_recomputes_chain_and_signature_with_standard_tools(
    ledger: Ledger,
) -> None:
    db = sqlite3.connect(ledger.path)
    ledger_id = db.execute("SELECT value FROM meta WHERE name = 'ledger_id'").fetchone()[
        0
    ]
    head = bytes(32)
    for entry_bytes, stored in db.execute("SELECT entry, hash FROM entries ORDER BY seq"):
        head = hashlib.sha256(head + entry_bytes).digest()
        assert head == stored
    signed_head, time, signature, public_key = db.execute(
        "SELECT c.head_hash, c.signed_at, c.signature, k.public_key FROM checkpoints c "
        "JOIN signing_keys k USING (key_id) WHERE c.seq = 10"
    ).fetchone()
    db.close()
    assert signed_head == head
    message = {
        "head": head.hex(),
        "ledger_id": ledger_id,
        "seq": 10,
        "time": time,
        "type": "puente.audit.checkpoint.v1",
    }
    Ed25519PublicKey.from_public_bytes(public_key).verify(
        signature, json.dumps(message, sort_keys=True, separators=(",", ":")).encode()
    )
