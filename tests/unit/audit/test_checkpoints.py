"""Checkpoints: the signed message, the schedule, the Avro record."""

from __future__ import annotations

import json
from datetime import UTC, datetime

from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.checkpoints import Schedule, from_datum, message, sign, to_datum
from services.audit.keys import raw_public
from services.contracts import codec
from services.contracts.catalog import Catalog

LEDGER = "0b0f8f43-1a7e-4f0e-9d55-1f1f1f1f1f1f"
AT = datetime(2025, 3, 1, 12, 0, 0, 123456, tzinfo=UTC)


def test_the_signed_message_is_canonical_json_of_type_ledger_seq_head_and_time() -> None:
    signed = message(LEDGER, 7, bytes(range(32)), "2025-03-01T12:00:00.123Z")
    assert signed == (
        b'{"head":"' + bytes(range(32)).hex().encode()
        + b'","ledger_id":"' + LEDGER.encode()
        + b'","seq":7,"time":"2025-03-01T12:00:00.123Z",'
        b'"type":"puente.audit.checkpoint.v1"}'
    )  # fmt: skip
    assert json.loads(signed)["seq"] == 7


def test_a_checkpoint_verifies_with_its_key_and_not_with_another(
    key: Ed25519PrivateKey,
) -> None:
    point = sign(key, LEDGER, 7, bytes(32), AT)
    assert point.time == "2025-03-01T12:00:00.123Z"
    assert point.valid_under(raw_public(key))
    assert not point.valid_under(raw_public(Ed25519PrivateKey.generate()))


def test_a_checkpoint_survives_its_avro_record_and_still_verifies(
    catalog: Catalog, key: Ed25519PrivateKey
) -> None:
    point = sign(key, LEDGER, 7, bytes(range(32)), AT)
    data = codec.encode(catalog.get("audit_checkpoint", 1), to_datum(point), check=True)
    entry, datum = codec.decode(catalog, data)
    assert entry.name == "audit_checkpoint"
    again = from_datum(datum)
    assert again == point
    assert again.valid_under(raw_public(key))


def test_every_field_of_the_checkpoint_schema_has_a_sensitivity(catalog: Catalog) -> None:
    fields = catalog.get("audit_checkpoint", 1).schema["fields"]
    assert {f["sensitivity"] for f in fields} == {"INTERNAL"}


def test_a_checkpoint_is_due_after_n_entries_or_t_seconds_with_anything_new() -> None:
    schedule = Schedule(every=100, seconds=30.0)
    assert schedule.due(head_seq=200, last_seq=100, seconds_since_last=0.0)
    assert not schedule.due(head_seq=199, last_seq=100, seconds_since_last=1.0)
    assert schedule.due(head_seq=101, last_seq=100, seconds_since_last=30.0)
    assert not schedule.due(head_seq=100, last_seq=100, seconds_since_last=3600.0)
