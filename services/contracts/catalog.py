"""The schema catalog: every schema parsed once, found by name+version or fingerprint.

Layout of the schema directory::

    shared/vN.avsc        named types used by several records (a JSON list); vN holds
                          the types that changed in version N (records vM see every
                          shared file up to M)
    <name>/vN.avsc        one record type per folder, one file per version

Event records (the four event types) and the hub's own records (rejections, audit
entries) live side by side; both are decoded by fingerprint.
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Final

import fastavro
from fastavro.schema import fingerprint, to_parsing_canonical_form

from services.contracts.errors import (
    SchemaCatalogError,
    UnknownEventTypeError,
    UnknownFingerprintError,
    UnknownSchemaVersionError,
)
from services.contracts.ids import EVENT_TYPES
from services.contracts.schema_json import (
    Schema,
    index_named,
    inline,
    strip_logical_types,
)

MAGIC: Final = b"\xc3\x01"
_VERSION_FILE: Final = re.compile(r"v([1-9][0-9]*)\.avsc")
SHARED_DIR: Final = "shared"


@dataclass(frozen=True, slots=True)
class SchemaEntry:
    """One parsed schema version with its wire identity."""

    name: str
    version: int
    schema: Schema = field(repr=False)
    parsed: Any = field(repr=False, compare=False)
    canonical: str = field(repr=False)
    fingerprint: int
    # The same schema without logical types: identical bytes on the wire, but datums
    # hold plain ints and strings. The router works on these (no datetime/UUID cost).
    plain: Any = field(default=None, repr=False, compare=False)

    @property
    def fingerprint_hex(self) -> str:
        """The fingerprint as 16 hex digits, in wire (little-endian) byte order."""
        return self.header[2:].hex()

    @property
    def header(self) -> bytes:
        """The 10-byte single-object header: C3 01 + little-endian fingerprint."""
        return MAGIC + self.fingerprint.to_bytes(8, "little")

    @property
    def is_event(self) -> bool:
        """Whether this is one of the four published event types."""
        return self.name in EVENT_TYPES


def make_entry(name: str, version: int, schema: Schema) -> SchemaEntry:
    """Parse a self-contained schema JSON once and compute its fingerprint."""
    try:
        parsed = fastavro.parse_schema(copy.deepcopy(schema))
        plain = fastavro.parse_schema(strip_logical_types(schema))
        canonical = to_parsing_canonical_form(parsed)
    except (fastavro.schema.SchemaParseException, KeyError, TypeError, ValueError) as e:
        raise SchemaCatalogError(f"schema {name} v{version} does not parse: {e}") from e
    fp = int.from_bytes(bytes.fromhex(fingerprint(canonical, "CRC-64-AVRO")), "little")
    return SchemaEntry(name, version, schema, parsed, canonical, fp, plain)


class Catalog:
    """All known schemas, by (name, version) and by fingerprint."""

    def __init__(self, entries: Iterable[SchemaEntry] = ()) -> None:
        self._by_name: dict[str, dict[int, SchemaEntry]] = {}
        self._by_fp: dict[int, SchemaEntry] = {}
        for entry in entries:
            self.add(entry)

    @classmethod
    def load(cls, directory: Path) -> Catalog:
        """Read every ``<name>/vN.avsc`` under ``directory``, resolving shared types."""
        if not directory.is_dir():
            raise SchemaCatalogError(f"schema directory {directory} does not exist")
        shared = [
            (_version_of(p), index_named([_read(p)]))
            for p in _versions(directory / SHARED_DIR)
        ]
        entries = []
        for folder in sorted(p for p in directory.iterdir() if p.is_dir()):
            if folder.name == SHARED_DIR:
                continue
            for path in _versions(folder):
                version = _version_of(path)
                schema = inline(_read(path), _shared_for(shared, version))
                entries.append(make_entry(folder.name, version, schema))
        return cls(entries)

    def add(self, entry: SchemaEntry) -> SchemaEntry:
        """Register a schema (also used for projected schemas derived at run time)."""
        known = self._by_fp.get(entry.fingerprint)
        if known is not None and known.canonical != entry.canonical:
            raise SchemaCatalogError(
                f"fingerprint collision between {known.name} v{known.version} "
                f"and {entry.name} v{entry.version}"
            )
        self._by_name.setdefault(entry.name, {})[entry.version] = entry
        self._by_fp.setdefault(entry.fingerprint, entry)
        return entry

    @property
    def names(self) -> list[str]:
        """Every record type name, sorted."""
        return sorted(self._by_name)

    def versions(self, name: str) -> list[SchemaEntry]:
        """All versions of ``name``, oldest first."""
        return [v for _, v in sorted(self._versions_of(name).items())]

    def get(self, name: str, version: int | None = None) -> SchemaEntry:
        """The given version of ``name``, or its latest when ``version`` is None."""
        versions = self._versions_of(name)
        if version is None:
            return versions[max(versions)]
        try:
            return versions[version]
        except KeyError:
            raise UnknownSchemaVersionError(
                f"{name} has no version {version}; known: "
                f"{', '.join(f'v{v}' for v in sorted(versions))}"
            ) from None

    def by_fingerprint(self, fp: int) -> SchemaEntry:
        """The schema whose CRC-64-AVRO fingerprint is ``fp``."""
        try:
            return self._by_fp[fp]
        except KeyError:
            wire = fp.to_bytes(8, "little").hex()
            raise UnknownFingerprintError(
                f"no schema in the catalog has fingerprint {wire}"
            ) from None

    def _versions_of(self, name: str) -> Mapping[int, SchemaEntry]:
        try:
            return self._by_name[name]
        except KeyError:
            raise UnknownEventTypeError(
                f"no schema named {name[:64]!r}; known: {', '.join(self.names)}"
            ) from None


def _version_of(path: Path) -> int:
    return int(_VERSION_FILE.fullmatch(path.name)[1])  # type: ignore[index]


def _shared_for(
    shared: list[tuple[int, dict[str, Schema]]], version: int
) -> dict[str, Schema]:
    """The shared named types a version-``version`` record resolves against.

    ``shared/vN.avsc`` holds what changed in N (e.g. an enum that gained symbols); a
    record ``vM`` sees every shared file up to M, later definitions replacing earlier
    ones, so published versions keep resolving exactly as when they were published.
    """
    named: dict[str, Schema] = {}
    for shared_version, types in shared:
        if shared_version <= version:
            named.update(types)
    return named


def _versions(folder: Path) -> list[Path]:
    if not folder.is_dir():
        return []
    found = [p for p in folder.iterdir() if _VERSION_FILE.fullmatch(p.name)]
    return sorted(found, key=lambda p: int(p.name[1:-5]))


def _read(path: Path) -> Schema:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SchemaCatalogError(f"cannot read schema {path}: {e}") from e
