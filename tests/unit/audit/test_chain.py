"""Canonical bytes and chain links, recomputable by an auditor with other tools."""

from __future__ import annotations

import copy
import hashlib
import json

import pytest

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
