"""Printing the plan: one binding per line, or kafka-acls.sh commands saying the same."""

from __future__ import annotations

import re
import shlex
from typing import Any, cast

from services.acl import Binding
from services.acl.formats import AdminConnection, camel, kafka_acls, lines, topic_lines
from services.acl.plan import Operation

LINE = re.compile(
    r"User:[A-Za-z0-9._-]+ (ALLOW|DENY) [A-Z_]+ (TOPIC|GROUP|CLUSTER|TRANSACTIONAL_ID) "
    r"(LITERAL|PREFIXED) \S+"
)
_OPERATIONS: tuple[Operation, ...] = (
    "READ",
    "WRITE",
    "DESCRIBE",
    "CREATE",
    "ALL",
    "DESCRIBE_CONFIGS",
)
_UNCAMEL = {camel(op): op for op in _OPERATIONS}


def parse_kafka_acls(script: list[str]) -> tuple[set[Binding], list[list[str]]]:
    """The bindings a kafka-acls.sh script adds (every operation x every resource)."""
    found: set[Binding] = set()
    commands = []
    for text in script:
        if text.startswith("#") or text == "set -eu":
            continue
        words = shlex.split(text)
        commands.append(words)
        options: dict[str, list[str]] = {}
        flags = iter(words[1:])
        for word in flags:
            if word in ("--add", "--cluster"):
                options.setdefault(word, []).append("")
            else:
                options.setdefault(word, []).append(next(flags))
        allow = options.get("--allow-principal", [])
        principal, permission = (
            (allow[0], "ALLOW") if allow else (options["--deny-principal"][0], "DENY")
        )
        pattern = options["--resource-pattern-type"][0].upper()
        resources = [("TOPIC", n) for n in options.get("--topic", [])]
        resources += [("GROUP", n) for n in options.get("--group", [])]
        resources += [
            ("TRANSACTIONAL_ID", n) for n in options.get("--transactional-id", [])
        ]
        for op in options["--operation"]:
            for kind, name in resources:
                found.add(
                    Binding(
                        principal,
                        cast(Any, permission),
                        cast(Any, _UNCAMEL[op]),
                        cast(Any, kind),
                        cast(Any, pattern),
                        name,
                    )
                )
    return found, commands


def test_every_line_is_one_binding_in_the_documented_shape(
    bindings: list[Binding],
) -> None:
    printed = lines(bindings)
    assert len(printed) == len(bindings)
    for text in printed:
        assert LINE.fullmatch(text), text
    assert "User:dgme ALLOW WRITE TOPIC PREFIXED hub.in.dgme." in printed
    assert "User:dgme ALLOW READ TOPIC LITERAL hub.rejected.dgme" in printed


def test_the_kafka_acls_commands_add_exactly_the_planned_bindings(
    bindings: list[Binding],
) -> None:
    script = kafka_acls(bindings, AdminConnection("kafka:9092", "/tmp/admin.properties"))
    assert script[:2] == ["#!/bin/sh", "set -eu"]
    added, commands = parse_kafka_acls(script)
    assert added == set(bindings)
    for words in commands:
        assert words[:5] == [
            "kafka-acls.sh", "--bootstrap-server", "kafka:9092",
            "--command-config", "/tmp/admin.properties",
        ]  # fmt: skip
        assert "--add" in words
    # Grouping keeps the JVM starts of the init job down: fewer commands than bindings.
    assert len(commands) < len(bindings)


def test_commands_without_a_command_config_omit_it() -> None:
    binding = Binding("User:x", "DENY", "READ", "TOPIC", "LITERAL", "a topic;rm -rf /")
    script = kafka_acls([binding], AdminConnection())
    words = shlex.split(script[-1])
    assert "--command-config" not in words
    assert words[words.index("--deny-principal") + 1] == "User:x"
    # Names are shell-quoted: the odd topic name stays one word.
    assert words[words.index("--topic") + 1] == "a topic;rm -rf /"


def test_operation_names_are_spelt_as_kafka_acls_expects() -> None:
    assert camel("READ") == "Read"
    assert camel("DESCRIBE_CONFIGS") == "DescribeConfigs"
    assert camel("IDEMPOTENT_WRITE") == "IdempotentWrite"


def test_topic_lines_give_name_and_partitions_sorted() -> None:
    assert topic_lines({"hub.out.b.referral": 2, "hub.audit": 1}) == [
        "hub.audit 1",
        "hub.out.b.referral 2",
    ]
