"""The AsyncAPI 3.0 document: @asyncapi/parser reads it, it is true, it is shipped."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml
from typer.testing import CliRunner

from services.cli import app as cli
from services.cli.schemas import hub_shape
from services.contracts import asyncapi, headers
from services.contracts.catalog import Catalog
from services.policy import Policy, load_policy
from services.runtime.settings import REPO_ROOT, HubSettings
from tests.unit.contracts.asyncapi_parser import ensure_parser, validate

SHIPPED = REPO_ROOT / "docs" / "asyncapi.yaml"
runner = CliRunner()


@pytest.fixture(scope="module")
def hub() -> tuple[Policy, Catalog]:
    """The repository's policy and the catalog it registered its projections in."""
    settings = HubSettings()
    catalog = Catalog.load(settings.schemas_dir)
    return load_policy(settings.policy_dir, catalog), catalog


def made(hub: tuple[Policy, Catalog], recipient: str | None = None) -> dict[str, Any]:
    """The document for ``recipient`` (None: the whole hub)."""
    policy, catalog = hub
    return asyncapi.document(hub_shape(policy, catalog), recipient)


def messages_of(document: dict[str, Any], channel: str) -> list[dict[str, Any]]:
    """The messages a channel holds, resolved from the components."""
    found = document["components"]["messages"]
    refs = document["channels"][channel]["messages"].values()
    return [found[ref["$ref"].rsplit("/", 1)[-1]] for ref in refs]


@pytest.mark.timeout(900)
def test_the_asyncapi_parser_reads_the_hubs_and_recipients_documents_without_error(
    hub: tuple[Policy, Catalog], tmp_path: Path
) -> None:
    files = []
    for who in (None, "conapina", "dgme", "mjsp_dnavmf"):
        path = tmp_path / f"{who or 'hub'}.yaml"
        path.write_text(asyncapi.to_yaml(made(hub, who)), encoding="utf-8")
        files.append(path)

    code, report = validate(*files)

    assert code == 0, report
    for path in files:
        assert f"{path}: 0 errors, 0 warnings, parsed" in report, report


def test_the_shipped_document_is_the_one_the_catalog_and_policy_make(
    hub: tuple[Policy, Catalog],
) -> None:
    expected = asyncapi.to_yaml(made(hub))

    assert SHIPPED.read_text(encoding="utf-8") == expected, (
        "docs/asyncapi.yaml is stale: puente schemas asyncapi --out docs/asyncapi.yaml"
    )


def test_the_yaml_reads_back_as_the_document(hub: tuple[Policy, Catalog]) -> None:
    document = made(hub, "conapina")

    assert yaml.safe_load(asyncapi.to_yaml(document)) == document


def test_a_recipient_sees_its_own_topics_and_exactly_its_projected_schemas(
    hub: tuple[Policy, Catalog],
) -> None:
    policy, _ = hub
    document = made(hub, "conapina")
    outbound = document["channels"]["outbound"]
    delivered = messages_of(document, "outbound")
    projected = {p.entry.fingerprint_hex for p, _ in policy.projections_for("conapina")}

    assert outbound["address"] == "hub.out.conapina.{event_type}"
    assert {m["x-puente-fingerprint"] for m in delivered} == projected
    assert document["channels"]["rejected"]["address"] == "hub.rejected.conapina"
    assert document["channels"]["inbound"]["parameters"]["source"]["enum"] == ["conapina"]
    assert "audit" not in document["channels"]
    assert "recipient" not in outbound["parameters"]


def test_every_message_names_its_schema_in_ce_dataschema_with_its_kafka_key(
    hub: tuple[Policy, Catalog],
) -> None:
    document = made(hub)
    messages = document["components"]["messages"].values()

    for message in messages:
        urn = headers.schema_urn(message["x-puente-fingerprint"])
        properties = message["headers"]["properties"]
        assert properties[headers.DATASCHEMA]["const"] == urn
        assert properties["ce_specversion"]["const"] == "1.0"
        assert message["payload"]["schemaFormat"].startswith(
            "application/vnd.apache.avro"
        )
        assert message["bindings"]["kafka"]["key"]["type"] == "string"
    for delivery in messages_of(document, "outbound"):
        assert headers.VIEW in delivery["headers"]["required"]


def test_channels_carry_addresses_partitions_and_the_sasl_scheme(
    hub: tuple[Policy, Catalog],
) -> None:
    document = made(hub)
    channels = document["channels"]

    assert {c: channels[c]["address"] for c in channels} == {
        "inbound": "hub.in.{source}.{event_type}",
        "outbound": "hub.out.{recipient}.{event_type}",
        "rejected": "hub.rejected.{source}",
        "audit": "hub.audit",
        "checkpoints": "hub.audit.checkpoints",
    }
    assert all(c["bindings"]["kafka"]["partitions"] >= 1 for c in channels.values())
    assert document["components"]["securitySchemes"]["scram"]["type"] == "scramSha512"
    assert set(document["operations"]) >= {"publishEvent", "receiveDeliveries"}


def test_puente_schemas_asyncapi_prints_json_and_refuses_an_unknown_recipient() -> None:
    printed = runner.invoke(cli, ["schemas", "asyncapi", "--recipient", "dgme", "--json"])
    unknown = runner.invoke(cli, ["schemas", "asyncapi", "--recipient", "nobody"])

    assert printed.exit_code == 0, printed.output
    assert json.loads(printed.stdout)["asyncapi"] == "3.0.0"
    assert unknown.exit_code == 1
    assert "unknown institution" in unknown.stderr


def test_a_machine_without_npm_fails_with_one_line_saying_what_to_install(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))

    with pytest.raises(pytest.fail.Exception, match=r"install Node\.js and npm"):
        ensure_parser()
