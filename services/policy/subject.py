"""Pseudonymous subject keys (docs/contracts.md, views), pure.

``subject_key = "k<v>:" + base32(HMAC-SHA256(hub_key, "<basis>:<normalised document>"))``
(lowercase, no padding), where ``<v>`` is the version of the hub key (1 for a key
given without one; each rotation adds the next). The document is chosen by basis
priority: DUI, NUI, passport, foreign national ids, then any other document; ties are
broken by the normalised value, so the order in which a source lists documents does
not matter.

For pseudonymous views the key is re-keyed per recipient,
``"r<v>:" + base32(HMAC-SHA256(recipient_key, subject_key))`` with
``recipient_key = HMAC-SHA256(hub_key, "recipient:" + id)``, so two recipients'
datasets cannot be joined without the hub. The ``r`` prefix keeps a re-keyed value
from ever being mistaken for a hub key (e.g. in a subject-report query).
"""

from __future__ import annotations

import hmac
import re
import unicodedata
from collections.abc import Iterable, Mapping
from typing import Any, Final

from services.policy.base32 import encode_digest
from services.policy.errors import KeyMaterialError

# The version of a hub key configured without one (``PUENTE_HUB_KEY=<hex>``).
KEY_VERSION: Final = 1
NO_BASIS: Final = "NONE"
MIN_KEY_BYTES: Final = 32
# document_type -> (priority, SubjectKeyBasis symbol); lower priority wins.
_BASES: Final[Mapping[str, tuple[int, str]]] = {
    "DUI": (0, "DUI"),
    "NUI": (1, "NUI"),
    "PASSPORT_SV": (2, "PASSPORT"),
    "PASSPORT_FOREIGN": (3, "PASSPORT"),
    "CA4_NATIONAL_ID": (4, "FOREIGN_ID"),
    "RESIDENCE_CARD": (5, "FOREIGN_ID"),
    # Documents only their issuer can vouch for: lowest assurance.
    "BORDER_RESIDENT_CARD": (6, "SOURCE_LOCAL"),
    "BIRTH_CERTIFICATE": (7, "SOURCE_LOCAL"),
    "CONSULAR_SAFE_CONDUCT": (8, "SOURCE_LOCAL"),
    "OTHER": (9, "SOURCE_LOCAL"),
}
# Where each event type carries the person's identity (a PersonIdentity record).
_IDENTITY: Final[Mapping[str, tuple[str, ...]]] = {
    "return_arrival": ("payload", "person_identity"),
    "border_crossing": ("payload", "traveller_identity"),
    "referral": ("payload", "subject_identity"),
}
_HOUSEHOLD: Final = "displacement_registration"


class SubjectKeys:
    """Computes hub subject keys and their per-recipient re-keyed forms."""

    def __init__(self, hub_key: bytes, version: int = KEY_VERSION) -> None:
        if len(hub_key) < MIN_KEY_BYTES:
            raise KeyMaterialError(
                f"the hub key has {len(hub_key)} bytes; "
                f"at least {MIN_KEY_BYTES} are needed"
            )
        if version < 1:
            raise KeyMaterialError(f"hub key version {version}: versions start at 1")
        self._hub_key = hub_key
        self.version = version
        self._subject_prefix = f"k{version}:"
        self._rekeyed_prefix = f"r{version}:"
        self._recipient_keys: dict[str, bytes] = {}

    def __repr__(self) -> str:
        return "SubjectKeys(<hub key hidden>)"

    def subject_key(
        self, event_type: str, datum: Mapping[str, Any]
    ) -> tuple[str | None, str]:
        """The hub subject key of the person in ``datum`` and its basis symbol.

        ``(None, "NONE")`` when the record carries no usable identity document.
        """
        chosen = best_document(documents_of(event_type, datum))
        if chosen is None:
            return None, NO_BASIS
        basis, normalised = chosen
        digest = _mac(self._hub_key, f"{basis}:{normalised}")
        return _encode(self._subject_prefix, digest), basis

    def rekey(self, recipient: str, subject_key: str) -> str:
        """The key ``recipient`` sees instead of ``subject_key`` (pseudonymous views)."""
        digest = _mac(self._recipient_key(recipient), subject_key)
        return _encode(self._rekeyed_prefix, digest)

    def recipient_id(self, recipient: str, value: str) -> str:
        """A UUID standing for ``value`` (an event or record id) for ``recipient`` alone.

        Pseudonymous recipients of one event must hold no common value to join on
        (docs/contracts.md): each gets its own, stable UUID, so it still dedupes
        redeliveries and follows one referral's lifecycle, but cannot match another's
        records.
        """
        digest = bytearray(_mac(self._recipient_key(recipient), f"id:{value}")[:16])
        digest[6] = (digest[6] & 0x0F) | 0x80  # version 8: custom (RFC 9562)
        digest[8] = (digest[8] & 0x3F) | 0x80  # RFC 4122 variant
        text = digest.hex()
        return f"{text[:8]}-{text[8:12]}-{text[12:16]}-{text[16:20]}-{text[20:]}"

    def _recipient_key(self, recipient: str) -> bytes:
        key = self._recipient_keys.get(recipient)
        if key is None:
            key = _mac(self._hub_key, f"recipient:{recipient}")
            self._recipient_keys[recipient] = key
        return key


def documents_of(event_type: str, datum: Mapping[str, Any]) -> list[Mapping[str, Any]]:
    """The identity documents of the record's subject (for displacement: the head)."""
    payload = datum.get("payload") or {}
    if event_type == _HOUSEHOLD:
        return _household_head_documents(payload.get("members") or [])
    path = _IDENTITY.get(event_type)
    if path is None:
        return []
    identity: Any = datum
    for name in path:
        identity = identity.get(name) if isinstance(identity, Mapping) else None
    return list(identity.get("documents") or []) if isinstance(identity, Mapping) else []


def _household_head_documents(
    members: Iterable[Mapping[str, Any]],
) -> list[Mapping[str, Any]]:
    with_identity = [m for m in members if m.get("identity")]
    heads = [m for m in with_identity if m.get("relationship_to_head") == "HEAD"]
    if not with_identity:
        return []
    chosen = (heads or with_identity)[0]
    return list(chosen["identity"].get("documents") or [])


def best_document(documents: Iterable[Mapping[str, Any]]) -> tuple[str, str] | None:
    """``(basis, normalised document)`` of the highest-priority usable document."""
    best: tuple[int, str, str] | None = None
    for document in documents:
        kind = document.get("document_type")
        rank = _BASES.get(kind) if isinstance(kind, str) else None
        number = normalise_number(document.get("document_number"))
        if rank is None or not number:
            continue
        priority, basis = rank
        country = normalise_number(document.get("issuing_country"))
        if basis in ("DUI", "NUI"):
            normalised = number
        elif kind == "PASSPORT_SV":
            normalised = f"SV:{number}"
        elif basis == "PASSPORT":
            normalised = f"{country}:{number}"
        else:
            normalised = f"{kind}:{country}:{number}"
        candidate = (priority, normalised, basis)
        if best is None or candidate < best:
            best = candidate
    return None if best is None else (best[2], best[1])


def normalise_number(value: Any) -> str:
    """Uppercase letters and digits only (``01234567-8`` -> ``012345678``)."""
    if not isinstance(value, str):
        return ""
    # After upper(), the ASCII letters and digits are exactly A-Z and 0-9.
    return _NOT_ALNUM.sub("", unicodedata.normalize("NFKC", value).upper())


_NOT_ALNUM: Final = re.compile("[^A-Z0-9]+")


def _mac(key: bytes, message: str) -> bytes:
    return hmac.digest(key, message.encode("utf-8"), "sha256")


def _encode(prefix: str, digest: bytes) -> str:
    # The prefix ("k2:", "r2:") names the hub key version that made the value, so
    # values of every version can stand side by side in the ledger and in a
    # recipient's data.
    return prefix + encode_digest(digest)
