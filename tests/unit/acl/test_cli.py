"""``puente acl plan / apply / topics`` as an operator runs them."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest
from aiokafka.admin import AIOKafkaAdminClient
from typer.testing import CliRunner

from services.acl.cli import app
from services.acl.formats import lines
from services.acl.plan import Binding
from services.runtime.kafka import admin_config
from services.runtime.settings import KafkaSettings
from tests.unit.acl.test_formats import parse_kafka_acls

runner = CliRunner()


def test_plan_prints_one_binding_per_line(bindings: list[Binding]) -> None:
    result = runner.invoke(app, ["plan"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines() == lines(bindings)


def test_plan_in_kafka_acls_format_writes_a_script_to_a_file(
    bindings: list[Binding], tmp_path: Path
) -> None:
    out = tmp_path / "acls.sh"
    result = runner.invoke(
        app,
        ["plan", "--format", "kafka-acls", "--bootstrap-server", "kafka:9092",
         "--command-config", "/tmp/admin.properties", "--out", str(out)],
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    assert result.output == ""
    added, _ = parse_kafka_acls(out.read_text().splitlines())
    assert added == set(bindings)


def test_plan_follows_the_principals_set_in_the_environment(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUENTE_ACL_ROUTER_PRINCIPAL", "hub-router-2")
    monkeypatch.setenv("PUENTE_ROUTER_GROUP_ID", "router-blue")
    result = runner.invoke(app, ["plan"])
    assert result.exit_code == 0, result.output
    assert "User:hub-router-2 ALLOW READ GROUP LITERAL router-blue" in result.output
    assert "User:puente-router" not in result.output


def test_a_broken_policy_folder_is_a_one_line_error(tmp_path: Path) -> None:
    result = runner.invoke(app, ["plan", "--policy-dir", str(tmp_path / "nowhere")])
    assert result.exit_code == 1
    assert result.output.startswith("error: ")


def test_apply_prints_the_commands_and_fails_because_aiokafka_cannot_create_acls(
    bindings: list[Binding],
) -> None:
    result = runner.invoke(app, ["apply", "--bootstrap-server", "kafka:9092"])
    assert result.exit_code == 1
    assert "ACLs were not applied" in result.output
    script = [
        t for t in result.output.splitlines() if t.startswith(("#!", "set", "kafka"))
    ]
    added, _ = parse_kafka_acls(script)
    assert added == set(bindings)


def test_topics_lists_every_topic_the_policy_needs(hub_topics: dict[str, int]) -> None:
    result = runner.invoke(app, ["topics"])
    assert result.exit_code == 0, result.output
    listed = dict(line.split() for line in result.output.splitlines())
    assert {k: int(v) for k, v in listed.items()} == hub_topics


def test_topics_create_without_a_cluster_is_a_clear_error(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.delenv("PUENTE_KAFKA_BOOTSTRAP_SERVERS", raising=False)
    result = runner.invoke(app, ["topics", "--create"])
    assert result.exit_code == 1
    assert "PUENTE_KAFKA_BOOTSTRAP_SERVERS" in result.output


@pytest.mark.integration
def test_topics_create_makes_every_topic_on_the_broker(
    kafka: KafkaSettings,
    hub_topics: dict[str, int],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    assert kafka.bootstrap_servers
    monkeypatch.setenv("PUENTE_KAFKA_BOOTSTRAP_SERVERS", kafka.bootstrap_servers)
    result = runner.invoke(app, ["topics", "--create"])
    assert result.exit_code == 0, result.output
    assert f"{len(hub_topics)} topics planned" in result.output
    assert set(hub_topics) <= asyncio.run(existing(kafka))
    again = runner.invoke(app, ["topics", "--create"])
    assert again.exit_code == 0
    assert again.output.strip().endswith(", 0 created")


async def existing(kafka: KafkaSettings) -> set[str]:
    admin = AIOKafkaAdminClient(**admin_config(kafka, "test-acl-topics"))
    await admin.start()
    try:
        return set(await admin.list_topics())
    finally:
        await admin.close()
