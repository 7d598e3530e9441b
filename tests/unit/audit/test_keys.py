"""Signing keys: configured as PEM or base64, or a development key made once."""

from __future__ import annotations

import base64
import stat
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey
from pydantic import SecretStr

from services.audit.app import signing_key
from services.audit.keys import (
    SigningKeyError,
    development_key,
    parse_private_key,
    parse_public_key,
    public_pem,
    raw_public,
)
from services.audit.settings import AuditSettings
from services.runtime.settings import HubSettings


def raw_private(key: Ed25519PrivateKey) -> bytes:
    return key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )


def test_a_development_key_is_generated_once_with_mode_0600(tmp_path: Path) -> None:
    path = tmp_path / "keys" / "audit-signing.key"
    first = development_key(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    again = development_key(path)
    assert raw_public(first) == raw_public(again)


def test_a_base64_raw_key_from_settings_is_used(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    settings = AuditSettings(
        signing_key=SecretStr(base64.b64encode(raw_private(key)).decode()),
        hub=HubSettings(state_dir=tmp_path),
    )
    assert raw_public(signing_key(settings)) == raw_public(key)
    assert not (tmp_path / "keys").exists()


def test_a_pem_key_file_from_settings_is_used(tmp_path: Path) -> None:
    key = Ed25519PrivateKey.generate()
    path = tmp_path / "signing.pem"
    path.write_bytes(
        key.private_bytes(
            serialization.Encoding.PEM,
            serialization.PrivateFormat.PKCS8,
            serialization.NoEncryption(),
        )
    )
    settings = AuditSettings(signing_key_file=path, hub=HubSettings(state_dir=tmp_path))
    assert raw_public(signing_key(settings)) == raw_public(key)


def test_without_configuration_the_development_key_in_the_state_dir_is_used(
    tmp_path: Path,
) -> None:
    settings = AuditSettings(hub=HubSettings(state_dir=tmp_path))
    key = signing_key(settings)
    assert (tmp_path / "keys" / "audit-signing.key").is_file()
    assert raw_public(signing_key(settings)) == raw_public(key)


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"not base64 at all!", "neither PEM nor base64"),
        (base64.b64encode(bytes(16)), "16 raw bytes"),
        (
            b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----",
            "cannot be read",
        ),
    ],
)
def test_a_malformed_private_key_is_refused_clearly(data: bytes, message: str) -> None:
    with pytest.raises(SigningKeyError, match=message):
        parse_private_key(data)


def test_a_key_of_another_algorithm_is_refused() -> None:
    pem = ec.generate_private_key(ec.SECP256R1()).private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    with pytest.raises(SigningKeyError, match="not an Ed25519 key"):
        parse_private_key(pem)


def test_a_public_key_reads_from_pem_and_from_base64_alike() -> None:
    raw = raw_public(Ed25519PrivateKey.generate())
    assert parse_public_key(public_pem(raw).encode()) == raw
    assert parse_public_key(base64.b64encode(raw) + b"\n") == raw
