"""Natural JSON <-> Avro datum (docs/contracts.md), compiled once per schema.

Natural JSON: records as objects, optional fields may be omitted, union values
written plainly, ``timestamp-millis`` as RFC 3339 with an offset, ``date`` as
``YYYY-MM-DD``, ``uuid`` as a string, enums as symbols, bytes as base64.
Errors name the field path and what was expected; they never echo the value
(it may be personal data), only its JSON type.
"""

from __future__ import annotations

import base64
import binascii
import re
import uuid
from collections.abc import Callable, Mapping
from datetime import UTC, date, datetime
from typing import Any, Final

from services.contracts.catalog import SchemaEntry
from services.contracts.errors import RecordInvalidError, SchemaCatalogError
from services.contracts.schema_json import PRIMITIVES, Schema, full_name

Convert = Callable[[Any, str], Any]
_INT32: Final = (-(2**31), 2**31 - 1)
_INT64: Final = (-(2**63), 2**63 - 1)
_JSON_TYPES: Final = {
    type(None): "null",
    bool: "boolean",
    int: "integer",
    float: "number",
    str: "string",
    list: "array",
    dict: "object",
}


def json_type(value: Any) -> str:
    """The JSON type name of ``value`` (for error messages without the value)."""
    return _JSON_TYPES.get(type(value), type(value).__name__)


class NaturalCodec:
    """Converters between natural JSON and Avro datums for one schema."""

    def __init__(self, schema: Schema) -> None:
        self._to_datum = _Compiler(natural_to_datum=True).compile(schema, None)
        self._to_plain = _Compiler(natural_to_datum=True, plain=True).compile(
            schema, None
        )
        self._to_natural = _Compiler(natural_to_datum=False).compile(schema, None)

    def to_datum(self, value: Any) -> Any:
        """Natural JSON (parsed) -> Avro datum; raises `RecordInvalidError`."""
        return self._to_datum(value, "")

    def to_plain_datum(self, value: Any) -> Any:
        """Like `to_datum`, with logical-type values plain (epoch ms, days, uuid text).

        Checked exactly as `to_datum`; encoded with ``plain=True`` the bytes are the
        same, without building datetime and UUID objects first.
        """
        return self._to_plain(value, "")

    def to_natural(self, datum: Any) -> Any:
        """Avro datum (as fastavro reads it) -> natural JSON-compatible value."""
        return self._to_natural(datum, "")


_CODECS: dict[int, NaturalCodec] = {}


def codec_for(entry: SchemaEntry) -> NaturalCodec:
    """The (cached) natural codec of a catalog entry."""
    codec = _CODECS.get(entry.fingerprint)
    if codec is None:
        codec = _CODECS[entry.fingerprint] = NaturalCodec(entry.schema)
    return codec


def _fail(path: str, expected: str, value: Any) -> RecordInvalidError:
    return RecordInvalidError(path, expected, json_type(value))


def _join(path: str, name: str) -> str:
    return f"{path}.{name}" if path else name


class _Compiler:
    def __init__(self, *, natural_to_datum: bool, plain: bool = False) -> None:
        self.inbound = natural_to_datum
        self.plain = plain
        self.named: dict[str, Convert] = {}
        self.kinds: dict[str, str] = {}

    def compile(self, schema: Schema, namespace: str | None) -> Convert:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return self._primitive(schema, None)
            return self._reference(full_name(schema, namespace))
        if isinstance(schema, list):
            return self._union(schema, namespace)
        kind = schema["type"]
        if kind in ("record", "error"):
            return self._record(schema, namespace)
        if kind == "enum":
            return self._enum(schema, namespace)
        if kind == "array":
            return self._array(self.compile(schema["items"], namespace))
        if kind == "map":
            return self._map(self.compile(schema["values"], namespace))
        if kind == "fixed":
            raise SchemaCatalogError("fixed types are not used by the hub's schemas")
        if isinstance(kind, str) and kind in PRIMITIVES:
            return self._primitive(kind, schema.get("logicalType"))
        return self.compile(kind, namespace)

    def _reference(self, name: str) -> Convert:
        if name not in self.kinds:
            raise SchemaCatalogError(f"unknown named type {name}")
        named = self.named
        # Late lookup: a record may refer to itself before it is fully compiled.
        return lambda value, path: named[name](value, path)  # noqa: PLW0108

    def _register(self, schema: Mapping[str, Any], namespace: str | None) -> str:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        self.kinds[name] = schema["type"]
        return name

    def _record(self, schema: Mapping[str, Any], namespace: str | None) -> Convert:
        name = self._register(schema, namespace)
        own_ns = name.rpartition(".")[0] or None
        fields: list[tuple[str, Convert, bool, Any]] = []
        for field in schema["fields"]:
            convert = self.compile(field["type"], own_ns)
            has_default = "default" in field
            default = _default_datum(convert, field) if has_default else None
            fields.append((field["name"], convert, has_default, default))
        known = frozenset(f[0] for f in fields)
        convert = self._record_in(fields, known) if self.inbound else _record_out(fields)
        self.named[name] = convert
        return convert

    @staticmethod
    def _record_in(
        fields: list[tuple[str, Convert, bool, Any]], known: frozenset[str]
    ) -> Convert:
        def to_datum(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _fail(path, "an object", value)
            extra = value.keys() - known
            if extra:
                raise RecordInvalidError(
                    _join(path, sorted(extra)[0]), "no such field (not in the schema)"
                )
            out = {}
            for name, convert, has_default, default in fields:
                if name in value:
                    out[name] = convert(value[name], _join(path, name))
                elif has_default:
                    out[name] = default
                else:
                    raise RecordInvalidError(
                        _join(path, name), "a value (required)", "nothing"
                    )
            return out

        return to_datum

    def _enum(self, schema: Mapping[str, Any], namespace: str | None) -> Convert:
        name = self._register(schema, namespace)
        symbols = frozenset(schema["symbols"])
        expected = "one of " + ", ".join(schema["symbols"])

        def convert(value: Any, path: str) -> Any:
            if isinstance(value, str) and value in symbols:
                return value
            raise _fail(path, expected, value)

        self.named[name] = convert
        return convert

    def _array(self, item: Convert) -> Convert:
        def convert(value: Any, path: str) -> Any:
            if not isinstance(value, list):
                raise _fail(path, "an array", value)
            return [item(v, f"{path}[{i}]") for i, v in enumerate(value)]

        return convert

    def _map(self, item: Convert) -> Convert:
        def convert(value: Any, path: str) -> Any:
            if not isinstance(value, dict):
                raise _fail(path, "an object (map)", value)
            return {k: item(v, f"{path}[{k!r}]") for k, v in value.items()}

        return convert

    def _union(self, branches: list[Schema], namespace: str | None) -> Convert:
        # Natural JSON writes union values plainly, which is unambiguous only for
        # optional values: the hub's schemas use no other unions.
        others = [b for b in branches if b != "null"]
        if len(others) != 1:
            raise SchemaCatalogError(
                f"union {branches!r}: only [null, T] unions have a natural JSON form"
            )
        only = self.compile(others[0], namespace)
        nullable = len(branches) == 2
        expected = f"null or {_describe(others[0])}"

        def convert(value: Any, path: str) -> Any:
            if value is None:
                if nullable:
                    return None
                raise _fail(path, expected, value)
            return only(value, path)

        return convert

    def _primitive(self, kind: str, logical: str | None) -> Convert:
        table = _OUTBOUND
        if self.inbound:
            table = _INBOUND_PLAIN if self.plain else _INBOUND
        return table.get((kind, logical)) or table[(kind, None)]


def _record_out(fields: list[tuple[str, Convert, bool, Any]]) -> Convert:
    def to_natural(datum: Any, path: str) -> Any:
        return {
            name: convert(datum[name], _join(path, name))
            for name, convert, _, _ in fields
            if name in datum
        }

    return to_natural


def _default_datum(convert: Convert, field: Mapping[str, Any]) -> Any:
    try:
        return convert(field["default"], field["name"])
    except RecordInvalidError:
        return field["default"]


def _describe(schema: Schema) -> str:
    if isinstance(schema, str):
        return schema.rpartition(".")[2]
    if isinstance(schema, dict):
        logical = schema.get("logicalType")
        if logical:
            return str(logical)
        if "name" in schema:
            return str(schema["name"])
        return str(schema.get("type"))
    return "a union"


def _check(predicate: Callable[[Any], bool], expected: str) -> Convert:
    def convert(value: Any, path: str) -> Any:
        if predicate(value):
            return value
        raise _fail(path, expected, value)

    return convert


def _in_range(value: Any, bounds: tuple[int, int]) -> bool:
    return (
        isinstance(value, int)
        and not isinstance(value, bool)
        and (bounds[0] <= value <= bounds[1])
    )


def _integer(bounds: tuple[int, int], expected: str) -> Convert:
    # JSON has one number type: 3.0 is the integer 3 (JSON Schema says so too, and
    # tools that generate requests from the OpenAPI document send it that way).
    def convert(value: Any, path: str) -> Any:
        if isinstance(value, float) and value.is_integer():
            value = int(value)
        if _in_range(value, bounds):
            return value
        raise _fail(path, expected, value)

    return convert


def _to_float(value: Any, path: str) -> Any:
    if isinstance(value, int | float) and not isinstance(value, bool):
        return float(value)
    raise _fail(path, "a number", value)


def _to_bytes(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            return base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            pass
    raise _fail(path, "base64-encoded bytes", value)


def _to_uuid(value: Any, path: str) -> Any:
    if isinstance(value, str):
        try:
            return uuid.UUID(value)
        except ValueError:
            pass
    raise _fail(path, "a UUID string", value)


def _to_date(value: Any, path: str) -> Any:
    if isinstance(value, str) and len(value) == 10:
        try:
            return date.fromisoformat(value)
        except ValueError:
            pass
    raise _fail(path, "a date YYYY-MM-DD", value)


def _to_timestamp(value: Any, path: str) -> Any:
    if isinstance(value, str) and len(value) >= 20 and value[10] in "Tt ":
        try:
            parsed = datetime.fromisoformat(value)
            # In UTC it may fall outside years 1-9999 (0001-01-01T00:00:00+00:01).
            moment = parsed.astimezone(UTC) if parsed.utcoffset() is not None else None
        except (ValueError, OverflowError):
            moment = None
        if moment is not None:
            return moment.replace(microsecond=moment.microsecond // 1000 * 1000)
    raise _fail(
        path, "an RFC 3339 timestamp with offset, e.g. 2026-11-02T14:05:00Z", value
    )


def format_timestamp(value: datetime) -> str:
    """RFC 3339 in UTC with milliseconds and a ``Z`` suffix."""
    text = value.astimezone(UTC).isoformat(timespec="milliseconds")
    return text.removesuffix("+00:00") + "Z"


def _identity(value: Any, _path: str) -> Any:
    return value


_INBOUND: Final[dict[tuple[str, str | None], Convert]] = {
    ("null", None): _check(lambda v: v is None, "null"),
    ("boolean", None): _check(lambda v: isinstance(v, bool), "true or false"),
    ("int", None): _integer(_INT32, "a 32-bit integer"),
    ("long", None): _integer(_INT64, "a 64-bit integer"),
    ("float", None): _to_float,
    ("double", None): _to_float,
    ("string", None): _check(lambda v: isinstance(v, str), "a string"),
    ("bytes", None): _to_bytes,
    ("string", "uuid"): _to_uuid,
    ("int", "date"): _to_date,
    ("long", "timestamp-millis"): _to_timestamp,
}

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_EPOCH_DAY: Final = date(1970, 1, 1)
_CANONICAL_UUID: Final = re.compile(
    r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"
)


def _to_epoch_ms(value: Any, path: str) -> int:
    # The same arithmetic as fastavro's timestamp-millis writer, so bytes match.
    moment: datetime = _to_timestamp(value, path)
    delta = moment - _EPOCH
    return (delta.days * 86_400 + delta.seconds) * 1000 + delta.microseconds // 1000


def _to_epoch_day(value: Any, path: str) -> int:
    return int((_to_date(value, path) - _EPOCH_DAY).days)


def _to_uuid_text(value: Any, path: str) -> str:
    # fastavro writes a UUID as its canonical text; most callers send exactly that.
    if isinstance(value, str) and _CANONICAL_UUID.fullmatch(value):
        return value
    return str(_to_uuid(value, path))


_INBOUND_PLAIN: Final[dict[tuple[str, str | None], Convert]] = {
    **_INBOUND,
    ("string", "uuid"): _to_uuid_text,
    ("int", "date"): _to_epoch_day,
    ("long", "timestamp-millis"): _to_epoch_ms,
}

_OUTBOUND: Final[dict[tuple[str, str | None], Convert]] = {
    ("null", None): _identity,
    ("boolean", None): _identity,
    ("int", None): _identity,
    ("long", None): _identity,
    ("float", None): _identity,
    ("double", None): _identity,
    ("string", None): _identity,
    ("bytes", None): lambda v, _p: base64.b64encode(v).decode("ascii"),
    ("string", "uuid"): lambda v, _p: str(v),
    ("int", "date"): lambda v, _p: v.isoformat(),
    ("long", "timestamp-millis"): lambda v, _p: format_timestamp(v),
}
