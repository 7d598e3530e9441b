"""The hub key ring: every version of the hub key, parsed from its written form.

A key ring holds one or more versions of the hub key (``k1``, ``k2``, ...). The
newest version computes new subject keys (``kN:``) and re-keyed ones (``rN:``);
older versions are kept so that a data-subject request can still find a person in
ledger entries made before a rotation. Written forms, one entry per line or
separated by commas::

    k1:<hex or base64>
    k2:<hex or base64>

A lone entry without a version (the form of earlier releases) is version 1.

Pure: reading the settings and key files, and writing the development key file, is
`services.runtime.hub_key_store`. Key material is never part of an error message.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Final

from services.policy.errors import KeyMaterialError
from services.policy.subject import KEY_VERSION, MIN_KEY_BYTES, SubjectKeys

_HEX: Final = re.compile(r"(?:[0-9a-fA-F]{2})+")
_VERSIONED: Final = re.compile(r"k([1-9][0-9]{0,5}):(.*)")
_SEPARATORS: Final = re.compile(r"[,\n]")


@dataclass(frozen=True, slots=True)
class HubKeys:
    """Every configured version of the hub key, and where they came from.

    ``origin`` names the source (a setting or a file path), never the key.
    """

    versions: Mapping[int, bytes]
    origin: str
    development: bool = False

    def __repr__(self) -> str:
        return f"HubKeys(versions={sorted(self.versions)}, origin={self.origin!r})"

    @property
    def newest(self) -> int:
        """The version that computes new subject keys."""
        return max(self.versions)

    def current(self) -> SubjectKeys:
        """`SubjectKeys` of the newest version (what the router uses)."""
        return SubjectKeys(self.versions[self.newest], self.newest)

    def every_version(self) -> list[SubjectKeys]:
        """`SubjectKeys` of every version, newest first."""
        return [SubjectKeys(self.versions[v], v) for v in sorted(self.versions)[::-1]]


def fingerprint(key: bytes) -> str:
    """A short public name of a key: tells versions apart without revealing them."""
    return hashlib.sha256(b"puente hub key fingerprint:" + key).hexdigest()[:16]


def parse_key(text: str, origin: str) -> bytes:
    """Decode a key written as hex or base64; ``origin`` names it in errors."""
    text = text.strip()
    if _HEX.fullmatch(text):
        key = bytes.fromhex(text)
    else:
        try:
            key = base64.b64decode(text, validate=True)
        except (binascii.Error, ValueError) as e:
            raise KeyMaterialError(
                f"{origin}: the hub key is neither hex nor base64"
            ) from e
    if len(key) < MIN_KEY_BYTES:
        raise KeyMaterialError(
            f"{origin}: the hub key has {len(key)} bytes; "
            f"at least {MIN_KEY_BYTES} are needed"
        )
    return key


def parse_hub_keys(text: str, origin: str) -> dict[int, bytes]:
    """Every version written in ``text`` (``kN:<key>`` entries, or one bare key).

    Entries are separated by commas or newlines; blank lines and lines starting
    with ``#`` are ignored. Errors name the entry by position, never its text.
    """
    versions: dict[int, bytes] = {}
    for number, entry in enumerate(_entries(text), start=1):
        where = f"{origin}, entry {number}"
        matched = _VERSIONED.fullmatch(entry)
        if matched is None and ":" in entry:
            raise KeyMaterialError(
                f"{where}: write a versioned key as k<version>:<hex>, e.g. k2:..."
            )
        version = int(matched.group(1)) if matched else KEY_VERSION
        if version in versions:
            raise KeyMaterialError(f"{where}: version k{version} is given twice")
        versions[version] = parse_key(matched.group(2) if matched else entry, where)
    if not versions:
        raise KeyMaterialError(f"{origin}: no hub key in it")
    return versions


def _entries(text: str) -> Iterator[str]:
    for raw in _SEPARATORS.split(text):
        entry = raw.strip()
        if entry and not entry.startswith("#"):
            yield entry
