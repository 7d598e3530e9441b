"""A local node's settings: the compose stack's file, only loopback details changed."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from services.kafkalocal import LocalKafkaError
from services.kafkalocal.config import TEMPLATE, Node, overlay, parse, render

PASSWORD = "f" * 48
KEYSTORE = Path("/state/tls/server.pem")


def nodes(count: int) -> list[Node]:
    return [
        Node(i + 1, 40000 + 3 * i, 40001 + 3 * i, 40002 + 3 * i, Path(f"/d/{i + 1}"))
        for i in range(count)
    ]


def rendered(count: int = 1, index: int = 0) -> dict[str, str]:
    cluster = nodes(count)
    return parse(
        render(cluster[index], cluster, admin_password=PASSWORD, keystore=KEYSTORE)
    )


def test_the_production_security_settings_are_kept_as_they_are() -> None:
    template = parse(TEMPLATE.read_text(encoding="utf-8"))
    local = rendered()
    for key in (
        "authorizer.class.name",
        "allow.everyone.if.no.acl.found",
        "super.users",
        "auto.create.topics.enable",
        "sasl.enabled.mechanisms",
        "sasl.mechanism.inter.broker.protocol",
        "listener.security.protocol.map",
        "listener.name.external.ssl.keystore.type",
        "log.retention.hours",
    ):
        assert local[key] == template[key], key
    assert local["allow.everyone.if.no.acl.found"] == "false"
    assert local["auto.create.topics.enable"] == "false"
    assert local["authorizer.class.name"].endswith("StandardAuthorizer")
    assert local["listener.security.protocol.map"] == (
        "INTERNAL:SASL_PLAINTEXT,CONTROLLER:SASL_PLAINTEXT,EXTERNAL:SASL_SSL"
    )


def test_only_the_overlay_keys_differ_from_the_template() -> None:
    template = parse(TEMPLATE.read_text(encoding="utf-8"))
    local = rendered()
    changed = {k for k in template if local[k] != template[k]}
    markers = {k for k, v in template.items() if re.search(r"@[A-Z_]+@", v)}
    assert changed <= set(overlay(nodes(1)[0], nodes(1))) | markers
    assert set(local) == set(template)


def test_markers_are_filled_as_start_sh_fills_them() -> None:
    text = render(nodes(1)[0], nodes(1), admin_password=PASSWORD, keystore=KEYSTORE)
    assert re.search(r"@[A-Z_]+@", text) is None
    local = parse(text)
    assert local["listener.name.external.ssl.keystore.location"] == str(KEYSTORE)
    assert (
        f'password="{PASSWORD}"'
        in local["listener.name.internal.scram-sha-512.sasl.jaas.config"]
    )


def test_listeners_are_on_loopback_with_the_nodes_own_ports() -> None:
    local = rendered()
    assert local["node.id"] == "1"
    assert local["listeners"] == (
        "INTERNAL://127.0.0.1:40000,CONTROLLER://127.0.0.1:40001,"
        "EXTERNAL://127.0.0.1:40002"
    )
    assert local["advertised.listeners"] == (
        "INTERNAL://127.0.0.1:40000,EXTERNAL://127.0.0.1:40002"
    )
    assert local["controller.quorum.voters"] == "1@127.0.0.1:40001"
    assert local["log.dirs"] == "/d/1"


def test_three_nodes_share_a_quorum_and_replicate_acknowledged_records_twice() -> None:
    second = rendered(3, 1)
    assert second["node.id"] == "2"
    assert second["controller.quorum.voters"] == (
        "1@127.0.0.1:40001,2@127.0.0.1:40004,3@127.0.0.1:40007"
    )
    assert second["default.replication.factor"] == "3"
    assert second["min.insync.replicas"] == "2"
    assert second["offsets.topic.replication.factor"] == "3"
    assert second["transaction.state.log.min.isr"] == "2"
    assert rendered()["min.insync.replicas"] == "1"


def test_a_marker_the_tool_does_not_know_is_refused(tmp_path: Path) -> None:
    template = tmp_path / "server.properties"
    template.write_text("x=@NEW_MARKER@\n", encoding="utf-8")
    with pytest.raises(LocalKafkaError, match="@NEW_MARKER@"):
        render(
            nodes(1)[0],
            nodes(1),
            admin_password=PASSWORD,
            keystore=KEYSTORE,
            template=template,
        )
