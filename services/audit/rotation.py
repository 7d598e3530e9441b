"""Key rotation, pure: the previous signing key vouches for the next one.

A verifier pins one public key (configuration, never the ledger). When the signing
key changes, the audit service records a *rotation*: the UTF-8 RFC 8785 JSON of::

    {"ledger_id": "<uuid>", "next_key_id": "<hex>", "next_public_key": "<base64>",
     "seq": <head seq>, "time": "<RFC 3339>", "type": "puente.audit.key-rotation.v1"}

signed by the previous key. A verifier that trusts the previous key then trusts the
next one for checkpoints from ``seq`` on; a rotation signed by a key it does not
trust changes nothing.
"""

from __future__ import annotations

import base64
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime
from typing import Final

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.keys import key_id, raw_public, signature_valid
from services.contracts.natural import format_timestamp

ROTATION_TYPE: Final = "puente.audit.key-rotation.v1"


@dataclass(frozen=True, slots=True)
class Rotation:
    """From ``seq`` on, ``next_public_key`` signs; vouched for by ``key_id``."""

    ledger_id: str
    seq: int
    time: str
    key_id: str
    public_key: bytes
    next_key_id: str
    next_public_key: bytes
    signature: bytes

    @property
    def message(self) -> bytes:
        """The bytes the signature covers."""
        return message(self.ledger_id, self.seq, self.time, self.next_public_key)


def message(ledger_id: str, seq: int, time: str, next_public: bytes) -> bytes:
    """The canonical signed message (see the module docstring)."""
    return rfc8785.dumps(
        {
            "type": ROTATION_TYPE,
            "ledger_id": ledger_id,
            "seq": seq,
            "time": time,
            "next_key_id": key_id(next_public),
            "next_public_key": base64.b64encode(next_public).decode("ascii"),
        }
    )


def sign_rotation(
    previous: Ed25519PrivateKey,
    next_public: bytes,
    ledger_id: str,
    seq: int,
    at: datetime,
) -> Rotation:
    """A rotation to ``next_public`` at ``seq``, signed by the ``previous`` key."""
    time = format_timestamp(at)
    public = raw_public(previous)
    signature = previous.sign(message(ledger_id, seq, time, next_public))
    return Rotation(
        ledger_id, seq, time, key_id(public), public, key_id(next_public),
        next_public, signature,
    )  # fmt: skip


class Keyring:
    """The keys a verifier trusts at each seq: pinned ones, then rotated-in ones."""

    def __init__(self, pinned: Mapping[str, bytes]) -> None:
        self.pinned = dict(pinned)
        self._since: dict[str, tuple[int, bytes]] = {}

    def follow(self, rotations: Iterable[Rotation], ledger_id: str) -> list[Rotation]:
        """Trust the keys that trusted keys rotated to; return rotations refused."""
        refused = []
        for rotation in sorted(rotations, key=lambda r: r.seq):
            signer = self.key(rotation.key_id, rotation.seq)
            valid = (
                rotation.ledger_id == ledger_id
                and signer is not None
                and signature_valid(signer, rotation.signature, rotation.message)
                and key_id(rotation.next_public_key) == rotation.next_key_id
            )
            if not valid:
                refused.append(rotation)
                continue
            known = self._since.get(rotation.next_key_id)
            if rotation.next_key_id not in self.pinned and (
                known is None or known[0] > rotation.seq
            ):
                self._since[rotation.next_key_id] = (
                    rotation.seq,
                    rotation.next_public_key,
                )
        return refused

    def key(self, name: str, seq: int) -> bytes | None:
        """The raw public key ``name`` if it is trusted for a signature at ``seq``."""
        if name in self.pinned:
            return self.pinned[name]
        since = self._since.get(name)
        return since[1] if since is not None and seq >= since[0] else None

    def all(self) -> dict[str, bytes]:
        """Every key trusted at some seq."""
        return {**self.pinned, **{k: v for k, (_, v) in self._since.items()}}
