"""A schema is found by any fingerprint a tool prints; ce_dataschema names it."""

from __future__ import annotations

import json
import struct

import avro.schema
import pytest
from typer.testing import CliRunner

from services.cli import app as cli
from services.contracts import headers, schema_ids
from services.contracts.catalog import Catalog
from services.contracts.errors import UnknownFingerprintError
from services.policy import load_policy
from services.runtime.settings import HubSettings

runner = CliRunner()


def java_forms(wire_hex: str) -> list[str]:
    """What Java prints for the fingerprint: the long in decimal and in hex."""
    value = struct.unpack("<q", bytes.fromhex(wire_hex))[0]
    return [str(value), format(value & (2**64 - 1), "x")]


def test_every_form_a_tool_prints_finds_the_same_schema(catalog: Catalog) -> None:
    entry = catalog.get("return_arrival")
    wire = entry.fingerprint_hex
    by_avro = avro.schema.parse(json.dumps(entry.schema)).fingerprint().hex()
    forms = [wire, wire.upper(), headers.schema_urn(wire), by_avro, *java_forms(wire)]

    found = {form: schema_ids.find(catalog, form) for form in forms}

    assert {e.fingerprint for e in found.values()} == {entry.fingerprint}


def test_the_avro_library_fingerprints_a_schema_with_logical_types_differently(
    catalog: Catalog,
) -> None:
    with_logical = catalog.get("referral")
    without = {"type": "record", "name": "A", "fields": [{"name": "x", "type": "long"}]}

    other = avro.schema.parse(json.dumps(with_logical.schema)).fingerprint().hex()
    same = avro.schema.parse(json.dumps(without)).fingerprint("CRC-64-AVRO")

    assert other != with_logical.fingerprint_hex
    assert schema_ids.avro_library_fingerprint(with_logical) == int.from_bytes(
        bytes.fromhex(other), "little"
    )
    assert len(same) == 8


@pytest.mark.parametrize("text", ["", "xyz", "0x", "12345678901234567890123", "urn:x:1"])
def test_text_that_is_no_fingerprint_is_refused_naming_the_forms(
    catalog: Catalog, text: str
) -> None:
    with pytest.raises(schema_ids.FingerprintFormatError, match="16 hex digits"):
        schema_ids.find(catalog, text)


def test_a_well_formed_fingerprint_of_no_schema_is_unknown(catalog: Catalog) -> None:
    with pytest.raises(UnknownFingerprintError):
        schema_ids.find(catalog, "00000000000000aa")


def test_the_dataschema_header_names_the_schema_and_parses_back() -> None:
    fingerprint = int.from_bytes(bytes.fromhex("0102030405060708"), "little")
    event = headers.CloudEvent("id-1", "dgme", "referral", dataschema="urn:x")

    built = headers.dataschema(fingerprint)
    parsed = headers.parse(headers.build(event) + built)

    assert built == [("ce_dataschema", b"urn:puente:schema:0102030405060708")]
    assert parsed.dataschema == "urn:x"  # the first value of a header wins


def test_schemas_show_by_fingerprint_prints_a_recipients_projected_schema() -> None:
    hub = HubSettings()
    catalog = Catalog.load(hub.schemas_dir)
    policy = load_policy(hub.policy_dir, catalog)
    projection = next(
        p for p, _ in policy.projections_for("conapina") if p.entry is not p.source
    )
    urn = headers.schema_urn(projection.entry.fingerprint_hex)

    shown = runner.invoke(cli, ["schemas", "show", "--fingerprint", urn])
    missing = runner.invoke(cli, ["schemas", "show", "--fingerprint", "00000000000000aa"])
    neither = runner.invoke(cli, ["schemas", "show"])

    assert shown.exit_code == 0, shown.output
    assert json.loads(shown.stdout) == projection.entry.schema
    assert missing.exit_code == 1
    assert "no schema" in missing.stderr
    assert neither.exit_code == 2
