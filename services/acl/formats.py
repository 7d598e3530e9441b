"""Printing an ACL plan: one binding per line, or ``kafka-acls.sh`` commands (pure)."""

from __future__ import annotations

import shlex
from collections import defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from typing import Final

from services.acl.plan import Binding, Operation, PatternType, Permission, ResourceType

_RESOURCE_FLAGS: Final[Mapping[ResourceType, str]] = {
    "TOPIC": "--topic",
    "GROUP": "--group",
    "CLUSTER": "--cluster",
    "TRANSACTIONAL_ID": "--transactional-id",
    "DELEGATION_TOKEN": "--delegation-token",
    "USER": "--user-principal",
}


@dataclass(frozen=True, slots=True)
class AdminConnection:
    """How the printed ``kafka-acls.sh`` commands reach the cluster."""

    bootstrap_server: str = "localhost:9092"
    command_config: str | None = None
    executable: str = "kafka-acls.sh"


def lines(bindings: Iterable[Binding]) -> list[str]:
    """One ``User:<p> <ALLOW|DENY> <op> <type> <pattern> <name>`` line per binding."""
    return [b.line() for b in bindings]


def kafka_acls(bindings: Iterable[Binding], connection: AdminConnection) -> list[str]:
    """A POSIX shell script of ``kafka-acls.sh --add`` commands granting ``bindings``.

    kafka-acls applies every ``--operation`` to every resource it names, so bindings
    of one principal, permission and pattern type that share the same operations go
    into one command: each command starts a JVM, and the init job runs them all.
    """
    script = ["#!/bin/sh", "set -eu"]
    for key, resources in _grouped(bindings).items():
        principal, permission, pattern_type, operations = key
        script.append(
            shlex.join(
                [
                    *_connection(connection),
                    "--add",
                    "--allow-principal" if permission == "ALLOW" else "--deny-principal",
                    principal,
                    *[w for op in operations for w in ("--operation", camel(op))],
                    *[w for r in resources for w in _resource(r)],
                    "--resource-pattern-type",
                    pattern_type.lower(),
                ]
            )
        )
    return script


def topic_lines(wanted: Mapping[str, int]) -> list[str]:
    """``<topic> <partitions>`` per topic, sorted by name."""
    return [f"{name} {partitions}" for name, partitions in sorted(wanted.items())]


def camel(operation: Operation) -> str:
    """``DESCRIBE_CONFIGS`` -> ``DescribeConfigs`` (kafka-acls' spelling)."""
    return "".join(part.capitalize() for part in operation.split("_"))


_GroupKey = tuple[str, Permission, PatternType, tuple[Operation, ...]]
_Resource = tuple[ResourceType, str]


def _grouped(bindings: Iterable[Binding]) -> dict[_GroupKey, list[_Resource]]:
    operations: dict[tuple[str, Permission, PatternType, _Resource], set[Operation]] = (
        defaultdict(set)
    )
    for b in bindings:
        resource = (b.resource_type, b.name)
        operations[(b.principal, b.permission, b.pattern_type, resource)].add(b.operation)
    grouped: dict[_GroupKey, list[_Resource]] = defaultdict(list)
    for (principal, permission, pattern, resource), ops in sorted(operations.items()):
        grouped[(principal, permission, pattern, tuple(sorted(ops)))].append(resource)
    return dict(grouped)


def _connection(connection: AdminConnection) -> list[str]:
    words = [connection.executable, "--bootstrap-server", connection.bootstrap_server]
    if connection.command_config:
        words += ["--command-config", connection.command_config]
    return words


def _resource(resource: _Resource) -> list[str]:
    kind, name = resource
    if kind == "CLUSTER":
        return [_RESOURCE_FLAGS[kind]]
    return [_RESOURCE_FLAGS[kind], name]
