"""Each institution's deliveries are read under its own Kafka principal (production)."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest
from prometheus_client import CollectorRegistry

from services.contracts.catalog import Catalog
from services.gateway.app import build_app
from services.gateway.deliveries import PullNotEnabledError, Readers
from services.gateway.rights import StaticRights
from services.gateway.settings import GatewaySettings
from services.runtime.settings import KafkaSettings

KAFKA = KafkaSettings(
    bootstrap_servers="127.0.0.1:9",
    sasl_username="puente-gateway",
    sasl_password="relay-secret",
)


def test_a_pool_reads_with_the_principal_of_the_institution_it_serves(
    tmp_path: Path,
) -> None:
    (tmp_path / "puente-gateway-reader.dgme").write_text("dgme-secret\n")
    readers = Readers(KAFKA, tmp_path)
    dgme = readers._reader_for("dgme")
    assert dgme._kafka.sasl_username == "puente-gateway-reader.dgme"
    assert dgme._kafka.sasl_password is not None
    assert dgme._kafka.sasl_password.get_secret_value() == "dgme-secret"
    assert readers._reader_for("dgme") is dgme  # one pool per institution
    with pytest.raises(PullNotEnabledError, match="not enabled for minsal"):
        readers._reader_for("minsal")


def test_without_a_passwords_folder_one_pool_reads_with_the_gateways_own_settings() -> (
    None
):
    readers = Readers(KAFKA)
    assert readers._reader_for("dgme") is readers._reader_for("minsal")
    assert readers._reader_for("dgme")._kafka.sasl_username == "puente-gateway"


async def test_an_institution_without_a_reader_credential_gets_403_not_anothers_reader(
    settings: GatewaySettings,
    registry: CollectorRegistry,
    rights: StaticRights,
    catalog: Catalog,
    tmp_path: Path,
) -> None:
    configured = settings.model_copy(update={"reader_credentials_dir": tmp_path})
    app = build_app(configured, registry, rights, catalog=catalog)
    async with app.router.lifespan_context(app):
        token = app.state.gateway.tokens.create("dgme")[1]
        transport = httpx.ASGITransport(app=app)
        async with httpx.AsyncClient(transport=transport, base_url="http://gw") as client:
            answer = await client.get(
                "/v1/deliveries/referral", headers={"Authorization": f"Bearer {token}"}
            )
    assert answer.status_code == 403
    assert answer.json()["title"] == "HTTP pull not enabled"
