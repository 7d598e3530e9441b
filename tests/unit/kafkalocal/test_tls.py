"""The run's CA and broker certificate: a chain a TLS client accepts for loopback."""

from __future__ import annotations

import ipaddress
import stat
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec

from services.kafkalocal.tls import generate


def test_the_key_store_holds_an_unencrypted_pkcs8_key_then_the_chain(
    tmp_path: Path,
) -> None:
    files = generate(tmp_path)
    text = files.keystore.read_text(encoding="ascii")
    assert text.startswith("-----BEGIN PRIVATE KEY-----")
    assert text.count("-----BEGIN CERTIFICATE-----") == 2
    key = serialization.load_pem_private_key(text.encode(), password=None)
    leaf, ca = x509.load_pem_x509_certificates(text.encode())
    assert leaf.public_key() == key.public_key()
    assert ca == x509.load_pem_x509_certificate(files.ca.read_bytes())


def test_the_broker_certificate_is_signed_by_the_ca_for_loopback_names(
    tmp_path: Path,
) -> None:
    files = generate(tmp_path)
    leaf, ca = x509.load_pem_x509_certificates(files.keystore.read_bytes())
    ca_key = ca.public_key()
    assert isinstance(ca_key, ec.EllipticCurvePublicKey)
    leaf.verify_directly_issued_by(ca)
    names = leaf.extensions.get_extension_for_class(x509.SubjectAlternativeName).value
    assert names.get_values_for_type(x509.DNSName) == ["localhost"]
    assert ipaddress.ip_address("127.0.0.1") in names.get_values_for_type(x509.IPAddress)
    assert ca.extensions.get_extension_for_class(x509.BasicConstraints).value.ca
    assert not leaf.extensions.get_extension_for_class(x509.BasicConstraints).value.ca


def test_each_run_gets_its_own_ca_and_only_the_owner_reads_the_key(
    tmp_path: Path,
) -> None:
    first = generate(tmp_path / "a")
    second = generate(tmp_path / "b")
    assert first.ca.read_bytes() != second.ca.read_bytes()
    assert stat.S_IMODE(first.keystore.stat().st_mode) == 0o600
