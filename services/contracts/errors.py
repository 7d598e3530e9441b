"""Errors of the whole hub: one root, narrow subclasses that say what went wrong.

Each error says whether retrying the same operation can help (``retriable``), and
errors about an inbound record carry the rejection ``reason`` code the router files
it under in ``hub.rejected.<source>``.
"""

from __future__ import annotations

from typing import ClassVar


class PuenteError(Exception):
    """Root of every error Puente raises on purpose."""

    retriable: ClassVar[bool] = False


class ConfigurationError(PuenteError):
    """Settings, schema files or policy files are wrong; fix them and restart."""


class SchemaCatalogError(ConfigurationError):
    """A schema file cannot be read, parsed or resolved."""


class ContractError(PuenteError):
    """A value breaks the data contract (ids, topics, records, headers)."""

    reason: ClassVar[str] = "invalid"


class InvalidIdError(ContractError):
    """An institution or event type id is malformed or unknown."""


class UnknownEventTypeError(InvalidIdError):
    """The event type id names no schema in the catalog."""

    reason: ClassVar[str] = "unknown_schema"


class UnknownSchemaVersionError(ContractError):
    """The event type exists but not in the requested version."""

    reason: ClassVar[str] = "unknown_schema"


class InvalidTopicError(ContractError):
    """A topic name does not follow the hub's naming contract."""


class HeaderError(ContractError):
    """CloudEvents headers are missing or malformed."""


class RecordInvalidError(ContractError):
    """A record does not match its schema; ``path`` names the offending field."""

    def __init__(self, path: str, expected: str, got: str | None = None) -> None:
        self.path = path
        self.expected = expected
        self.got = got
        detail = f"{path or '<record>'}: expected {expected}"
        if got is not None:
            detail += f", got {got}"
        super().__init__(detail)


class DecodeError(ContractError):
    """Bytes on the wire cannot be turned into a record."""

    reason: ClassVar[str] = "undecodable"


class EmptyMessageError(DecodeError):
    """The message has no value bytes at all."""


class TruncatedMessageError(DecodeError):
    """The message ends before its header or body is complete."""


class BadMagicError(DecodeError):
    """The message does not start with the Avro single-object marker C3 01."""


class UnknownFingerprintError(DecodeError):
    """The writer schema fingerprint is not in the catalog."""

    reason: ClassVar[str] = "unknown_schema"


class BodyMismatchError(DecodeError):
    """The Avro body does not match the schema its fingerprint names."""
