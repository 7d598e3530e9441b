"""Signed checkpoints of the chain head, pure: message, signing, schedule, Avro datum.

**Signed message.** The UTF-8 RFC 8785 JSON of::

    {"head": "<hex of hash_seq>", "ledger_id": "<uuid>", "seq": <seq>,
     "time": "<RFC 3339 UTC, milliseconds, Z>", "type": "puente.audit.checkpoint.v1"}

``type`` separates these signatures from anything else the key might sign;
``ledger_id`` keeps a checkpoint of one ledger from vouching for another.
"""

from __future__ import annotations

import uuid
from dataclasses import dataclass
from datetime import datetime
from typing import Any, Final

import rfc8785
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from services.audit.keys import key_id, raw_public, signature_valid
from services.contracts.natural import format_timestamp

CHECKPOINT_TYPE: Final = "puente.audit.checkpoint.v1"
CHECKPOINT_SCHEMA: Final = "audit_checkpoint"


@dataclass(frozen=True, slots=True)
class Checkpoint:
    """The chain head at ``seq``, signed at ``time`` by the key ``key_id``."""

    ledger_id: str
    seq: int
    head: bytes
    time: str
    key_id: str
    public_key: bytes
    signature: bytes

    @property
    def message(self) -> bytes:
        """The bytes the signature covers."""
        return message(self.ledger_id, self.seq, self.head, self.time)

    def valid_under(self, public_raw: bytes) -> bool:
        """Whether the signature verifies with the raw public key ``public_raw``."""
        return signature_valid(public_raw, self.signature, self.message)


def message(ledger_id: str, seq: int, head: bytes, time: str) -> bytes:
    """The canonical signed message (see the module docstring)."""
    return rfc8785.dumps(
        {
            "type": CHECKPOINT_TYPE,
            "ledger_id": ledger_id,
            "seq": seq,
            "head": head.hex(),
            "time": time,
        }
    )


def sign(
    key: Ed25519PrivateKey, ledger_id: str, seq: int, head: bytes, at: datetime
) -> Checkpoint:
    """A checkpoint of ``head`` at ``seq`` signed with ``key`` at time ``at``."""
    time = format_timestamp(at)  # milliseconds, so the Avro copy signs the same
    public = raw_public(key)
    signature = key.sign(message(ledger_id, seq, head, time))
    return Checkpoint(ledger_id, seq, head, time, key_id(public), public, signature)


def to_datum(checkpoint: Checkpoint) -> dict[str, Any]:
    """The ``audit_checkpoint`` v1 Avro datum of a checkpoint."""
    return {
        "ledger_id": uuid.UUID(checkpoint.ledger_id),
        "seq": checkpoint.seq,
        "head_hash": checkpoint.head.hex(),
        "signed_at": datetime.fromisoformat(checkpoint.time),
        "key_id": checkpoint.key_id,
        "public_key": checkpoint.public_key,
        "signature": checkpoint.signature,
    }


def from_datum(datum: dict[str, Any]) -> Checkpoint:
    """A checkpoint read back from its Avro datum (e.g. by an external verifier)."""
    return Checkpoint(
        str(datum["ledger_id"]),
        int(datum["seq"]),
        bytes.fromhex(datum["head_hash"]),
        format_timestamp(datum["signed_at"]),
        datum["key_id"],
        datum["public_key"],
        datum["signature"],
    )


@dataclass(frozen=True, slots=True)
class Schedule:
    """When to checkpoint: ``every`` new entries, or after ``seconds`` if any is new."""

    every: int
    seconds: float

    def due(self, head_seq: int, last_seq: int, seconds_since_last: float) -> bool:
        """Whether a checkpoint should be taken now."""
        new = head_seq - last_seq
        return new >= self.every or (new > 0 and seconds_since_last >= self.seconds)
