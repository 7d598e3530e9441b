"""Ed25519 keys for signing checkpoints: parse, load, generate a development key.

A private key is given as PEM (PKCS#8) or as base64 of the raw 32 bytes; a public
key likewise as PEM (SubjectPublicKeyInfo) or base64 of the raw 32 bytes. A key is
named by its ``key_id``: lowercase hex of the first 16 bytes of SHA-256 over the
raw public key.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import logging
import os
from pathlib import Path
from typing import Final

from cryptography.exceptions import InvalidSignature, UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import (
    Ed25519PrivateKey,
    Ed25519PublicKey,
)

from services.contracts.errors import ConfigurationError
from services.runtime.environment import allow_development_key

log = logging.getLogger(__name__)
RAW_KEY_BYTES: Final = 32
_PEM_MARK: Final = b"-----BEGIN"


class SigningKeyError(ConfigurationError):
    """A signing or verification key cannot be read or is not Ed25519."""


def key_id(public_raw: bytes) -> str:
    """The short, stable name of a raw public key."""
    return hashlib.sha256(public_raw).digest()[:16].hex()


def raw_public(key: Ed25519PrivateKey | Ed25519PublicKey) -> bytes:
    """The raw 32 bytes of the public half of ``key``."""
    public = key.public_key() if isinstance(key, Ed25519PrivateKey) else key
    return public.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)


def public_pem(public_raw: bytes) -> str:
    """The PEM (SubjectPublicKeyInfo) text of a raw public key."""
    key = Ed25519PublicKey.from_public_bytes(public_raw)
    pem = key.public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return pem.decode("ascii")


def parse_private_key(data: bytes) -> Ed25519PrivateKey:
    """A private key from PEM or base64 raw bytes; `SigningKeyError` otherwise."""
    data = data.strip()
    if data.startswith(_PEM_MARK):
        try:
            key = serialization.load_pem_private_key(data, password=None)
        except (ValueError, TypeError, UnsupportedAlgorithm) as e:
            raise SigningKeyError(f"the signing key PEM cannot be read: {e}") from e
        if not isinstance(key, Ed25519PrivateKey):
            raise SigningKeyError("the signing key is not an Ed25519 key")
        return key
    return Ed25519PrivateKey.from_private_bytes(_raw(data, "signing key"))


def parse_public_key(data: bytes) -> bytes:
    """The raw bytes of a public key given as PEM or base64 raw bytes."""
    data = data.strip()
    if (start := data.find(_PEM_MARK)) >= 0:
        data = data[start:]  # a comment line may precede, as `public-key` prints
    if data.startswith(_PEM_MARK):
        try:
            key = serialization.load_pem_public_key(data)
        except (ValueError, UnsupportedAlgorithm) as e:
            raise SigningKeyError(f"the public key PEM cannot be read: {e}") from e
        if not isinstance(key, Ed25519PublicKey):
            raise SigningKeyError("the public key is not an Ed25519 key")
        return raw_public(key)
    return _raw(data, "public key")


def _raw(data: bytes, what: str) -> bytes:
    try:
        raw = base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError) as e:
        raise SigningKeyError(f"the {what} is neither PEM nor base64") from e
    if len(raw) != RAW_KEY_BYTES:
        raise SigningKeyError(
            f"the {what} has {len(raw)} raw bytes; Ed25519 keys have {RAW_KEY_BYTES}"
        )
    return raw


def read_key_file(path: Path) -> bytes:
    """The bytes of a key file, or `SigningKeyError` naming the file."""
    try:
        return path.read_bytes()
    except OSError as e:
        raise SigningKeyError(f"cannot read key file {path}: {e.strerror}") from e


def development_key(path: Path) -> Ed25519PrivateKey:
    """The development key at ``path``, generated (mode 0600) on first use."""
    allow_development_key("audit signing key", "PUENTE_AUDIT_SIGNING_KEY or _FILE")
    if path.exists():
        return parse_private_key(read_key_file(path))
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
        # O_EXCL: two services starting together must not overwrite each other's key.
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return parse_private_key(read_key_file(path))
    except OSError as e:
        raise SigningKeyError(f"cannot create development key {path}: {e}") from e
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    log.warning(
        "generated a development audit signing key (key_id %s)", key_id(raw_public(key))
    )
    return key


def signature_valid(public_raw: bytes, signature: bytes, message: bytes) -> bool:
    """Whether ``signature`` is a valid Ed25519 signature of ``message``."""
    try:
        Ed25519PublicKey.from_public_bytes(public_raw).verify(signature, message)
    except (InvalidSignature, ValueError):
        return False
    return True
