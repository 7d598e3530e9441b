"""The hub's one Avro codec: whole messages, and record bodies behind `BodyCodec`.

Messages are Avro single-object encoding (Avro spec): ``C3 01`` + 8-byte LE
fingerprint + body, read and written by fastavro with logical types (`encode`,
`decode`). Every failure becomes a named `DecodeError` / `RecordInvalidError`; no
fastavro, struct or index error escapes.

Bodies of plain datums (no logical types), which the router reads and writes per
field, go through a `BodyCodec`: `body_codec` gives the functions generated from
the schema (`contracts.readers`, `contracts.writers`; the router's speed) where
they cover it, and `FastavroBody`, the reference, elsewhere. Property tests hold
the generated ones equal to the reference on every schema of the catalog.
"""

from __future__ import annotations

import io
import struct
from typing import Any, Final, Protocol

from fastavro import schemaless_reader, schemaless_writer
from fastavro.validation import ValidationError, validate

from services.contracts.catalog import MAGIC, Catalog, SchemaEntry
from services.contracts.errors import (
    BadMagicError,
    BodyMismatchError,
    DecodeError,
    EmptyMessageError,
    RecordInvalidError,
    TruncatedMessageError,
)
from services.contracts.readers import Read, compile_reader
from services.contracts.writers import Encode, compile_writer

HEADER_SIZE: Final = 10
# Garbage can make fastavro fail in many ways; all of them mean "body does not match".
READ_FAILURES: Final = (
    EOFError,
    IndexError,
    KeyError,
    ValueError,
    TypeError,
    OverflowError,
    MemoryError,
    UnicodeDecodeError,
    RecursionError,  # a forged, deeply nested value of a recursive type
    struct.error,
)
WRITE_FAILURES: Final = (ValueError, TypeError, KeyError, AttributeError, OverflowError)


class BodyCodec(Protocol):
    """Reads and writes the binary body of one Avro schema (plain datums)."""

    @property
    def read(self) -> Read:
        """``(data, position) -> (datum, position after it)``; fails as READ_FAILURES."""

    @property
    def write(self) -> Encode:
        """``datum -> bytes``, not strict; fails as WRITE_FAILURES."""


class FastavroBody:
    """The reference `BodyCodec`: fastavro's schemaless reader and writer."""

    def __init__(self, parsed: Any) -> None:
        self.parsed = parsed

    @property
    def read(self) -> Read:
        """Fastavro's reader, from a position in ``data``."""
        return self._read

    @property
    def write(self) -> Encode:
        """Fastavro's non-strict writer."""
        return self._write

    def _read(self, data: bytes, position: int) -> tuple[Any, int]:
        body = io.BytesIO(data)
        body.seek(position)
        value = schemaless_reader(body, self.parsed, None)
        return value, body.tell()

    def _write(self, datum: Any) -> bytes:
        buffer = io.BytesIO()
        schemaless_writer(buffer, self.parsed, datum)
        return buffer.getvalue()


class GeneratedBody:
    """A `BodyCodec` of functions generated from the schema (reference: fastavro).

    Its ``read`` and ``write`` are the plain functions themselves: the router calls
    them per field of every record, so no method or wrapper stands in between.
    """

    __slots__ = ("read", "write")

    def __init__(self, read: Read, write: Encode) -> None:
        self.read = read
        self.write = write


def body_codec(parsed: Any) -> BodyCodec:
    """The codec of ``parsed``, a plain ``fastavro.parse_schema`` result.

    Generated functions where they cover the schema, fastavro's where they do not
    (reading and writing are covered apart: readers refuse some array shapes).
    """
    read, write = compile_reader(parsed), compile_writer(parsed)
    if read is None and write is None:
        return FastavroBody(parsed)
    reference = FastavroBody(parsed)
    return GeneratedBody(read or reference.read, write or reference.write)


def fingerprint_of(data: bytes) -> int:
    """Read the writer fingerprint from a single-object message header."""
    if not data:
        raise EmptyMessageError("message has no value")
    if data[:2] != MAGIC[: len(data[:2])]:
        raise BadMagicError(f"message starts with {data[:2].hex()}, not c301")
    if len(data) < HEADER_SIZE:
        raise TruncatedMessageError(
            f"message is {len(data)} bytes, shorter than the 10-byte header"
        )
    return int.from_bytes(data[2:HEADER_SIZE], "little")


def encode(
    entry: SchemaEntry, datum: Any, *, check: bool = False, plain: bool = False
) -> bytes:
    """Encode ``datum`` as a single-object message written with ``entry``.

    fastavro coerces some wrong types silently (a string for a boolean), so datums
    that did not come from `natural` or a decoder should be encoded with ``check``.
    ``plain``: the datum holds logical-type values as plain ints and strings.
    """
    if check:
        _validate(entry, datum)
    buffer = io.BytesIO()
    buffer.write(entry.header)
    try:
        schema = entry.plain if plain else entry.parsed
        schemaless_writer(buffer, schema, datum, strict_allow_default=True)
    except WRITE_FAILURES as e:
        raise _explain(entry, datum, e) from e
    return buffer.getvalue()


def decode(
    catalog: Catalog, data: bytes, *, plain: bool = False
) -> tuple[SchemaEntry, Any]:
    """Decode a single-object message with the writer schema its fingerprint names.

    ``plain``: leave logical-type values as their plain ints and strings.
    """
    entry = catalog.by_fingerprint(fingerprint_of(data))
    return entry, read_body(entry, data, plain=plain)


def read_body(
    writer: SchemaEntry,
    data: bytes,
    reader: SchemaEntry | None = None,
    *,
    plain: bool = False,
) -> Any:
    """Read the body of ``data`` written with ``writer``, optionally as ``reader``."""
    body = io.BytesIO(data)
    body.seek(HEADER_SIZE)
    if plain:
        schemas = (writer.plain, reader.plain if reader else None)
    else:
        schemas = (writer.parsed, reader.parsed if reader else None)
    try:
        datum = schemaless_reader(body, *schemas)
    except READ_FAILURES as e:
        raise explain_read(writer, e) from e
    check_fully_read(writer, body.tell(), len(data))
    return datum


def explain_read(writer: SchemaEntry, error: Exception) -> DecodeError:
    """The named error for a body fastavro could not read."""
    if isinstance(error, EOFError):
        return TruncatedMessageError(
            f"body ends early for {writer.name} v{writer.version}"
        )
    return BodyMismatchError(
        f"body does not match {writer.name} v{writer.version}: {type(error).__name__}"
    )


def check_fully_read(writer: SchemaEntry, position: int, size: int) -> None:
    """Raise `BodyMismatchError` if bytes are left after the record."""
    if position != size:
        raise BodyMismatchError(
            f"{size - position} bytes left over after a "
            f"{writer.name} v{writer.version} record"
        )


def decode_as(catalog: Catalog, data: bytes, reader: SchemaEntry) -> Any:
    """Decode ``data`` and resolve it to ``reader`` (Avro schema resolution)."""
    writer = catalog.by_fingerprint(fingerprint_of(data))
    return read_body(writer, data, reader)


def _validate(entry: SchemaEntry, datum: Any) -> None:
    try:
        validate(datum, entry.parsed, raise_errors=True, strict=True)
    except ValidationError as e:
        first = e.errors[0] if e.errors else None
        if first is None:
            raise RecordInvalidError("", f"a {entry.name} record") from e
        raise RecordInvalidError(
            str(first.field or ""), str(first.schema), type(first.datum).__name__
        ) from e


def _explain(entry: SchemaEntry, datum: Any, cause: Exception) -> RecordInvalidError:
    """Turn a write failure into an error naming the field path (slow path only)."""
    try:
        _validate(entry, datum)
    except RecordInvalidError as e:
        return e
    return RecordInvalidError("", f"a {entry.name} record", type(cause).__name__)
