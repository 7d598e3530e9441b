"""Every service's Kafka connection takes the SASL/SCRAM and TLS settings."""

from __future__ import annotations

import ast
import datetime as dt
import ssl
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from faststream.security import SASLScram512

from services.runtime.kafka import (
    admin_config,
    broker_options,
    consumer_config,
    producer_config,
)
from services.runtime.settings import REPO_ROOT, KafkaSettings
from tests.unit.deploy.support import SETTINGS

CLIENTS = {
    "AIOKafkaProducer",
    "AIOKafkaConsumer",
    "AIOKafkaAdminClient",
    "KafkaAdminClient",
    "KafkaBroker",
}
HELPERS = {"producer_config", "consumer_config", "admin_config", "broker_options"}


def ca_file(tmp_path: Path) -> Path:
    """A self-signed CA certificate, as PUENTE_KAFKA_SSL_CAFILE would name."""
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Puente test CA")])
    now = dt.datetime.now(dt.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(now)
        .not_valid_after(now + dt.timedelta(days=1))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    path = tmp_path / "ca.pem"
    path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    return path


def test_every_kafka_client_in_the_services_is_built_from_the_shared_settings() -> None:
    built = 0
    for path in (REPO_ROOT / "services").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if not isinstance(node, ast.Call):
                continue
            called = getattr(node.func, "id", getattr(node.func, "attr", None))
            if called not in CLIENTS:
                continue
            spread = [
                kw.value.func
                for kw in node.keywords
                if kw.arg is None and isinstance(kw.value, ast.Call)
            ]
            helpers = {getattr(f, "id", getattr(f, "attr", None)) for f in spread}
            where = f"{path.relative_to(REPO_ROOT)}:{node.lineno}"
            assert helpers & HELPERS, f"{where}: {called} without the Kafka settings"
            built += 1
    assert built >= 5


@pytest.mark.parametrize("cls", [c for c in SETTINGS if "kafka" in c.model_fields])
def test_each_service_reads_sasl_and_tls_from_the_environment(
    cls: type, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    ca = ca_file(tmp_path)
    monkeypatch.setenv("PUENTE_KAFKA_BOOTSTRAP_SERVERS", "kafka.example:9094")
    monkeypatch.setenv("PUENTE_KAFKA_SECURITY_PROTOCOL", "SASL_SSL")
    monkeypatch.setenv("PUENTE_KAFKA_SASL_MECHANISM", "SCRAM-SHA-512")
    monkeypatch.setenv("PUENTE_KAFKA_SASL_USERNAME", "puente-router")
    monkeypatch.setenv("PUENTE_KAFKA_SASL_PASSWORD", "s3cret")
    monkeypatch.setenv("PUENTE_KAFKA_SSL_CAFILE", str(ca))
    kafka = cls().kafka
    assert isinstance(kafka, KafkaSettings)
    for options in (
        producer_config(kafka, "p"),
        consumer_config(kafka, "g", "c"),
        admin_config(kafka, "a"),
    ):
        assert options["security_protocol"] == "SASL_SSL"
        assert options["sasl_mechanism"] == "SCRAM-SHA-512"
        assert options["sasl_plain_username"] == "puente-router"
        assert options["sasl_plain_password"] == "s3cret"
        assert isinstance(options["ssl_context"], ssl.SSLContext)
        assert options["ssl_context"].verify_mode == ssl.CERT_REQUIRED
    security = broker_options(kafka, "b")["security"]
    assert isinstance(security, SASLScram512)
    assert security.use_ssl


def test_the_password_never_shows_in_the_settings_repr(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("PUENTE_KAFKA_SASL_PASSWORD", "s3cret-value")
    assert "s3cret-value" not in repr(KafkaSettings())
