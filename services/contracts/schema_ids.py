"""A catalog schema found by the fingerprint another tool reports for it.

The hub names a writer schema by its CRC-64-AVRO fingerprint of the Parsing
Canonical Form, as 16 hex digits in wire (little-endian) order: what the
single-object header carries, what fastavro's ``fingerprint`` prints, and what
``ce_dataschema`` holds after ``urn:puente:schema:``. Other tools print the same
number differently, and one computes another number:

- Java (``SchemaNormalization.parsingFingerprint64``) gives a ``long``: printed as
  a signed decimal, or with ``Long.toHexString`` as big-endian hex (leading zeros
  dropped);
- the Apache ``avro`` Python library (1.12) keeps ``{"type": "string"}`` for a
  logical type's primitive in its canonical form where the specification, fastavro
  and Java write ``"string"``; for a schema with logical types its fingerprint is
  another number (same bytes on the wire, same decoding).

`find` accepts all of them.
"""

from __future__ import annotations

import json
import re
from typing import Final

from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, UnknownFingerprintError
from services.contracts.headers import SCHEMA_URN_PREFIX

_HEX: Final = re.compile(r"(?:0x)?([0-9a-fA-F]{1,16})")
_DECIMAL: Final = re.compile(r"-?[0-9]{1,20}")
_MASK: Final = 2**64 - 1
# Catalog fingerprint -> the avro library's fingerprint of the same schema.
_AVRO_LIBRARY: dict[int, int] = {}
# The pattern a fingerprint argument matches (for the gateway's path parameter).
PATTERN: Final = r"^(urn:puente:schema:)?((0x)?[0-9a-fA-F]{1,16}|-?[0-9]{1,20})$"


class FingerprintFormatError(ContractError):
    """The text is no fingerprint in any form the hub reads."""


def candidates(text: str) -> list[int]:
    """The fingerprints ``text`` may stand for, as catalog values (wire order).

    Raises `FingerprintFormatError` for text that is none of the accepted forms.
    """
    text = text.strip().removeprefix(SCHEMA_URN_PREFIX)
    found: list[int] = []
    hex_match = _HEX.fullmatch(text)
    if hex_match:
        digits = hex_match[1].lower()
        if len(digits) == 16:
            found.append(int.from_bytes(bytes.fromhex(digits), "little"))
        found.append(int(digits, 16))  # Java's Long.toHexString (big-endian value)
    if _DECIMAL.fullmatch(text) and not text.startswith("0x"):
        value = int(text)
        if -(2**63) <= value < 2**64:
            found.append(value & _MASK)  # Java's signed long
    if not found:
        raise FingerprintFormatError(
            "a fingerprint is 16 hex digits (wire order, as fastavro prints it), "
            "Java's long in hex or decimal, or urn:puente:schema:<16 hex digits>"
        )
    return list(dict.fromkeys(found))


def find(catalog: Catalog, text: str) -> SchemaEntry:
    """The schema ``text`` names, by any fingerprint form; `UnknownFingerprintError`."""
    wanted = candidates(text)
    for value in wanted:
        try:
            return catalog.by_fingerprint(value)
        except UnknownFingerprintError:
            continue
    for entry in _entries(catalog):
        if avro_library_fingerprint(entry) in wanted:
            return entry
    raise UnknownFingerprintError(f"no schema in the catalog has fingerprint {text[:40]}")


def avro_library_fingerprint(entry: SchemaEntry) -> int:
    """The fingerprint the Apache ``avro`` library computes for ``entry`` (wire order)."""
    known = _AVRO_LIBRARY.get(entry.fingerprint)
    if known is None:
        import avro.schema  # noqa: PLC0415 - only for lookups the catalog misses

        parsed = avro.schema.parse(json.dumps(entry.schema))
        known = int.from_bytes(parsed.fingerprint("CRC-64-AVRO"), "little")
        _AVRO_LIBRARY[entry.fingerprint] = known
    return known


def _entries(catalog: Catalog) -> list[SchemaEntry]:
    return [entry for name in catalog.names for entry in catalog.versions(name)]
