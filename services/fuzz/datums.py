"""Random Avro datums of any catalog schema, deterministic per seed (pure, no I/O).

The campaign needs inputs that decode but carry values no ministry sends: random
strings, extreme numbers, times at the edges of what a ``datetime`` holds, text that
is almost a UUID. Hypothesis draws such values well but is a test-only dependency and
is slow to draw from outside a test, so this is a small seeded walker over the
schema instead. Datums are *plain* (uuids as text, timestamps as epoch
milliseconds, dates as days), so values the logical types refuse can be encoded and
reach the router, which must refuse them by reason.

``pins`` replaces values at dotted paths (``envelope.source_institution_id``) with a
choice among candidates, so a share of the inputs gets past the source check and
reaches the policy.
"""

from __future__ import annotations

import random
import string
import uuid
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final

from services.contracts.admission import (
    MAX_DATE_DAYS,
    MAX_TIMESTAMP_MS,
    MIN_DATE_DAYS,
    MIN_TIMESTAMP_MS,
)
from services.contracts.schema_json import PRIMITIVES, full_name

_ALPHABET: Final = string.ascii_letters + string.digits + " -_.:/áéíñü€\u200b\U0001f600"
# Epoch milliseconds of 2020-01-01 and 2026-01-01: plausible recent event times.
_RECENT_MS: Final = (1_577_836_800_000, 1_767_225_600_000)
_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)


class DatumGenerator:
    """Draws plain datums of one self-contained Avro schema from a seeded stream."""

    def __init__(
        self,
        schema: Any,
        rng: random.Random,
        pins: Mapping[str, Sequence[Any]] | None = None,
        *,
        max_items: int = 3,
    ) -> None:
        self.schema = schema
        self.rng = rng
        self.pins = dict(pins or {})
        self.max_items = max_items
        self._named: dict[str, Any] = {}
        # Every named type first: a union branch not drawn may hold a definition.
        self._register(schema, None)

    def draw(self) -> Any:
        """One datum of the schema."""
        return self._value(self.schema, None, "")

    def _value(self, schema: Any, namespace: str | None, path: str) -> Any:
        pinned = self.pins.get(path)
        if pinned:
            self._register(schema, namespace)
            return self.rng.choice(list(pinned))
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self._primitive(schema, None)
            return self._value(self._named[full_name(schema, namespace)], namespace, path)
        if isinstance(schema, list):
            return self._value(self.rng.choice(schema), namespace, path)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, namespace, path)
        if kind == "enum":
            self._name(schema, namespace)
            return self.rng.choice(schema["symbols"])
        if kind == "array":
            size = self.rng.randint(0, self.max_items)
            return [self._value(schema["items"], namespace, path) for _ in range(size)]
        if kind == "map":
            size = self.rng.randint(0, self.max_items)
            return {
                self._text(): self._value(schema["values"], namespace, path)
                for _ in range(size)
            }
        if kind == "fixed":
            self._name(schema, namespace)
            return self.rng.randbytes(schema["size"])
        if isinstance(kind, str) and kind in PRIMITIVES:
            return self._primitive(kind, schema.get("logicalType"))
        return self._value(kind, namespace, path)

    def _record(self, schema: Mapping[str, Any], namespace: str | None, path: str) -> Any:
        name = self._name(schema, namespace)
        own = name.rpartition(".")[0] or None
        return {
            f["name"]: self._value(
                f["type"], own, f"{path}.{f['name']}" if path else f["name"]
            )
            for f in schema["fields"]
        }

    def _name(self, schema: Mapping[str, Any], namespace: str | None) -> str:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        self._named.setdefault(name, schema)
        return name

    def _register(self, schema: Any, namespace: str | None) -> None:
        """Note named types defined under a pinned path: later fields refer to them."""
        if isinstance(schema, list):
            for branch in schema:
                self._register(branch, namespace)
        elif isinstance(schema, dict):
            kind = schema.get("type")
            if kind in ("record", "error", "enum", "fixed"):
                own = self._name(schema, namespace).rpartition(".")[0] or None
                for field in schema.get("fields", ()):
                    self._register(field["type"], own)
            elif kind == "array":
                self._register(schema["items"], namespace)
            elif kind == "map":
                self._register(schema["values"], namespace)

    def _primitive(self, kind: str, logical: str | None) -> Any:
        special = _LOGICAL.get((kind, logical))
        if special is not None:
            return special(self.rng)
        return _PLAIN[kind](self)

    def _text(self) -> str:
        rng = self.rng
        size = rng.choice((0, 1, 3, 8, 12, 40))
        return "".join(rng.choice(_ALPHABET) for _ in range(size))


def _uuid_text(rng: random.Random) -> str:
    """Mostly a UUID; sometimes text that only looks like one, or none at all."""
    roll = rng.random()
    value = str(uuid.UUID(int=rng.getrandbits(128), version=4))
    if roll < 0.8:
        return value
    if roll < 0.86:
        # Spellings `uuid.UUID` also reads: upper case, no hyphens, braces, URN.
        return rng.choice(
            (value.upper(), value.replace("-", ""), f"{{{value}}}", f"urn:uuid:{value}")
        )
    if roll < 0.93:
        return value[:-1] + rng.choice("gz-")  # one character off
    return rng.choice(("", "not-a-uuid", value.replace("-", "")[:31], value + "0"))


def _timestamp_ms(rng: random.Random) -> int:
    """Mostly a recent time; sometimes the edges of years 1..9999 or beyond them."""
    roll = rng.random()
    if roll < 0.8:
        return rng.randint(*_RECENT_MS)
    return rng.choice(
        (MIN_TIMESTAMP_MS, MAX_TIMESTAMP_MS, MIN_TIMESTAMP_MS - 1, MAX_TIMESTAMP_MS + 1,
         0, -1, _INT64[0], _INT64[1], 4_102_444_800_000)
    )  # fmt: skip


def _date_days(rng: random.Random) -> int:
    """Mostly a date of the last century; sometimes an edge of what a date holds."""
    if rng.random() < 0.85:
        return rng.randint(-25_000, 20_000)
    return rng.choice(
        (MIN_DATE_DAYS, MAX_DATE_DAYS, MIN_DATE_DAYS - 1, MAX_DATE_DAYS + 1, *_INT32)
    )


_LOGICAL: Final[Mapping[tuple[str, str | None], Callable[[random.Random], Any]]] = {
    ("string", "uuid"): _uuid_text,
    ("long", "timestamp-millis"): _timestamp_ms,
    ("int", "date"): _date_days,
}


def _number(rng: random.Random, bounds: tuple[int, int]) -> int:
    if rng.random() < 0.8:
        return rng.randint(-5, 120)
    return rng.choice((*bounds, rng.randint(*bounds)))


def _float(rng: random.Random, largest: float) -> float:
    if rng.random() < 0.8:
        return rng.uniform(-1e3, 1e3)
    return rng.choice((0.0, -0.0, largest, -largest, 1e-45, float("inf"), float("nan")))


_PLAIN: Final[Mapping[str, Callable[[DatumGenerator], Any]]] = {
    "null": lambda g: None,
    "boolean": lambda g: g.rng.random() < 0.5,
    "int": lambda g: _number(g.rng, _INT32),
    "long": lambda g: _number(g.rng, _INT64),
    "float": lambda g: _float(g.rng, 3.0e38),
    "double": lambda g: _float(g.rng, 1.7e308),
    "string": lambda g: g._text(),
    "bytes": lambda g: g.rng.randbytes(g.rng.randint(0, 16)),
}
