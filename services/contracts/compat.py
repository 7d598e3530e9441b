"""Schema evolution checks: BACKWARD compatibility and immutable published versions.

Compatibility uses the reference ``avro`` package's implementation of Avro's
schema-resolution rules (``avro.compatibility``) rather than our own.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Final

import avro.errors
import avro.schema
from avro.compatibility import ReaderWriterCompatibilityChecker, SchemaCompatibilityType

from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, SchemaCatalogError

LOCK_FILE: Final = "fingerprints.json"


@dataclass(frozen=True, slots=True)
class Finding:
    """One problem found by `check`: which schema, and what is wrong."""

    name: str
    message: str


def to_avro(entry: SchemaEntry) -> avro.schema.Schema:
    """Parse a catalog entry with the reference implementation."""
    try:
        return avro.schema.parse(json.dumps(entry.schema))
    except (avro.errors.AvroException, ValueError) as e:
        raise SchemaCatalogError(
            f"{entry.name} v{entry.version} does not parse with the reference Avro: {e}"
        ) from e


def backward_findings(catalog: Catalog, name: str) -> list[Finding]:
    """Every (earlier, later) pair of ``name`` where later cannot read earlier's data."""
    versions = catalog.versions(name)
    parsed = [to_avro(v) for v in versions]
    checker = ReaderWriterCompatibilityChecker()  # type: ignore[no-untyped-call]
    findings = []
    for i, writer in enumerate(parsed):
        for j in range(i + 1, len(parsed)):
            result = checker.get_compatibility(parsed[j], writer)
            if result.compatibility is not SchemaCompatibilityType.compatible:
                where = ", ".join(sorted(result.locations))
                why = "; ".join(sorted(result.messages))
                findings.append(
                    Finding(
                        name,
                        f"v{versions[j].version} cannot read v{versions[i].version} data "
                        f"at {where}: {why}",
                    )
                )
    return findings


def lock_findings(catalog: Catalog, lock: dict[str, dict[str, str]]) -> list[Finding]:
    """Published versions whose fingerprint changed, or that vanished."""
    findings = []
    for name, versions in sorted(lock.items()):
        for version, expected in sorted(versions.items()):
            try:
                actual = catalog.get(name, int(version)).fingerprint_hex
            except (ContractError, ValueError):
                findings.append(Finding(name, f"published v{version} is missing"))
                continue
            if actual != expected:
                findings.append(
                    Finding(
                        name,
                        f"published v{version} changed "
                        f"(fingerprint {expected} -> {actual}); "
                        "published versions are immutable: add a new version instead",
                    )
                )
    return findings


def read_lock(path: Path) -> dict[str, dict[str, str]]:
    """The published fingerprints recorded in ``path`` (empty if absent)."""
    if not path.exists():
        return {}
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as e:
        raise SchemaCatalogError(f"cannot read {path}: {e}") from e
    if not isinstance(data, dict):
        raise SchemaCatalogError(f"{path} must hold an object of name -> version -> hex")
    return data


def current_lock(catalog: Catalog) -> dict[str, dict[str, str]]:
    """Fingerprints of every version now in the catalog, for the lock file."""
    return {
        name: {str(e.version): e.fingerprint_hex for e in catalog.versions(name)}
        for name in catalog.names
    }


def check(catalog: Catalog, lock: dict[str, dict[str, str]]) -> list[Finding]:
    """All evolution problems: BACKWARD breaks and changed published versions."""
    findings = lock_findings(catalog, lock)
    for name in catalog.names:
        findings.extend(backward_findings(catalog, name))
    return findings
