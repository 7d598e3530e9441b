"""The broker settings of a local node: the compose stack's file plus a local overlay.

``deploy/kafka/server.properties`` is the one settings file of production and of
this machine. Its ``@...@`` markers are replaced exactly as ``start.sh`` replaces
them, and an overlay appended at the end changes only what a process on this machine
must change: the node id, the quorum, the loopback listeners and ports, the data
folder, and with three nodes the replication of internal topics. Java's properties
loader keeps the last value of a key, so the overlay wins over the template's lines.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.kafkalocal.errors import LocalKafkaError
from services.runtime.settings import REPO_ROOT

TEMPLATE: Final = REPO_ROOT / "deploy" / "kafka" / "server.properties"
HOST: Final = "127.0.0.1"
_MARKER: Final = re.compile(r"@[A-Z_]+@")
# Replication of a three-node cluster: a record is acknowledged by two of three nodes,
# so one node may fail without losing an acknowledged record or stopping writes.
_CLUSTER: Final[Mapping[str, str]] = {
    "default.replication.factor": "3",
    "min.insync.replicas": "2",
    "offsets.topic.replication.factor": "3",
    "transaction.state.log.replication.factor": "3",
    "transaction.state.log.min.isr": "2",
    "share.coordinator.state.topic.replication.factor": "3",
    "share.coordinator.state.topic.min.isr": "2",
}


@dataclass(frozen=True, slots=True)
class Node:
    """One KRaft node (broker and controller in one JVM) and its loopback ports."""

    node_id: int
    internal_port: int
    controller_port: int
    external_port: int
    data_dir: Path

    @property
    def bootstrap(self) -> str:
        """``host:port`` of its SASL_PLAINTEXT listener (the hub's services)."""
        return f"{HOST}:{self.internal_port}"

    @property
    def tls_bootstrap(self) -> str:
        """``host:port`` of its SASL_SSL listener (institutions' systems)."""
        return f"{HOST}:{self.external_port}"


def overlay(node: Node, nodes: Sequence[Node]) -> dict[str, str]:
    """The settings that differ on this machine, in the order they are written."""
    voters = ",".join(f"{n.node_id}@{HOST}:{n.controller_port}" for n in nodes)
    settings = {
        "node.id": str(node.node_id),
        "controller.quorum.voters": voters,
        "listeners": (
            f"INTERNAL://{HOST}:{node.internal_port},"
            f"CONTROLLER://{HOST}:{node.controller_port},"
            f"EXTERNAL://{HOST}:{node.external_port}"
        ),
        "advertised.listeners": (
            f"INTERNAL://{node.bootstrap},EXTERNAL://{node.tls_bootstrap}"
        ),
        "log.dirs": str(node.data_dir),
    }
    if len(nodes) > 1:
        settings.update(_CLUSTER)
    return settings


def render(
    node: Node,
    nodes: Sequence[Node],
    *,
    admin_password: str,
    keystore: Path,
    template: Path = TEMPLATE,
) -> str:
    """The node's settings file: the template with its markers replaced, then overlay."""
    try:
        text = template.read_text(encoding="utf-8")
    except OSError as e:
        raise LocalKafkaError(f"cannot read {template}: {e.strerror}") from e
    values = {
        "@ADMIN_PASSWORD@": admin_password,
        "@EXTERNAL_HOST@": HOST,
        "@EXTERNAL_PORT@": str(node.external_port),
        "@TLS_KEYSTORE@": str(keystore),
    }
    for marker, value in values.items():
        text = text.replace(marker, value)
    left = _MARKER.search(text)
    if left:
        raise LocalKafkaError(
            f"{template.name} has a marker puente kafka does not fill: {left.group(0)}"
        )
    lines = [
        text.rstrip("\n"),
        "",
        "# Local overrides (puente kafka up): what differs from the compose stack.",
        *(f"{key}={value}" for key, value in overlay(node, nodes).items()),
    ]
    return "\n".join(lines) + "\n"


def parse(text: str) -> dict[str, str]:
    """``key=value`` lines as Java reads them for these files: the last value wins."""
    found: dict[str, str] = {}
    for raw in text.splitlines():
        line = raw.strip()
        if not line or line.startswith(("#", "!")) or "=" not in line:
            continue
        key, value = line.split("=", 1)
        found[key.strip()] = value.strip()
    return found
