"""Test schemas of the generated readers and writers: one using every type they
cover (recursive), and the kinds they leave to fastavro."""

from __future__ import annotations

from typing import Any

import fastavro

CODES = [f"S{i}" for i in range(70)]
TREE = fastavro.parse_schema(
    {
        "type": "record",
        "name": "sv.test.Node",
        "fields": [
            {
                "name": "kind",
                "type": {"type": "enum", "name": "Kind", "symbols": ["A", "B"]},
            },
            {"name": "again", "type": "sv.test.Kind"},
            {"name": "size", "type": "double"},
            {"name": "count", "type": "int"},
            {"name": "flag", "type": "boolean"},
            # More than 63 symbols: an index past 63 takes two bytes.
            {
                "name": "code",
                "type": {"type": "enum", "name": "Code", "symbols": CODES},
            },
            {"name": "words", "type": {"type": "array", "items": "string"}},
            {"name": "ratio", "type": "float"},
            {"name": "tags", "type": {"type": "map", "values": "long"}},
            {"name": "blob", "type": ["bytes", "null"]},
            {"name": "note", "type": "string", "default": "none"},
            {"name": "children", "type": {"type": "array", "items": "sv.test.Node"}},
        ],
    }
)


def node(**overrides: Any) -> dict[str, Any]:
    """A tree node with one value of every kind; ``overrides`` replace fields."""
    node: dict[str, Any] = {
        "kind": "B",
        "again": "A",
        "size": -2.5,
        "count": 64,
        "flag": True,
        "code": "S65",
        # 70 words, one of 70 characters: lengths past 63 take two bytes.
        "words": ["x" * 70, *("w" for _ in range(69))],
        "ratio": 0.25,
        "tags": {"x": -(2**40), "ñ": 63},
        "blob": b"\x00\xff",
        "note": "hola",
        "children": [],
    }
    return node | overrides


# Schemas neither generator covers: they fall back to fastavro.
UNCOVERED: list[Any] = [
    ["null", "string", "long"],
    ["string", "long"],
    {"type": "fixed", "name": "Four", "size": 4},
    {"type": "long", "logicalType": "timestamp-millis"},
]
