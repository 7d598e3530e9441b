"""PUENTE_ROUTER_TRANSACTIONS on the embedded broker, which has no transactions."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.router.app import TransactionsUnavailableError, build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings

pytestmark = [pytest.mark.smoke]


def settings(kafka: KafkaSettings, state_dir: Path, mode: str) -> RouterSettings:
    return RouterSettings.model_validate(
        {
            "group_id": f"router-tx-{uuid.uuid4().hex[:8]}",
            "port": free_port(),
            "hub": HubSettings(state_dir=state_dir),
            "kafka": kafka,
            "transactions": mode,
        }
    )


async def test_auto_on_the_embedded_broker_routes_at_least_once_and_says_so(
    kafka: KafkaSettings, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    service = build_service(settings(kafka, state_dir, "auto"), CollectorRegistry())
    with caplog.at_level(logging.INFO, logger="services.router.app"):
        await service.start()
    try:
        assert service.health()["transactions"] is False
        assert service.router.committer.transactional is False
        assert any(
            "at-least-once with event-id de-duplication" in r.getMessage()
            for r in caplog.records
        )
    finally:
        await service.stop()


async def test_transactions_on_refuses_to_start_on_a_broker_without_them(
    kafka: KafkaSettings, state_dir: Path
) -> None:
    config = settings(kafka, state_dir, "on")
    service = build_service(config, CollectorRegistry())
    try:
        with pytest.raises(TransactionsUnavailableError, match=config.transactional_id):
            await service.start()
        assert service.health()["ok"] is False
    finally:
        await service.stop()


def test_the_transactional_id_is_the_group_and_a_stable_instance_id() -> None:
    config = RouterSettings(group_id="puente-router", port=9101, instance_id="r-1")
    assert config.transactional_id == "puente-router.r-1"
    # Without one: the host name and the ops port, the same after a restart.
    again = RouterSettings(group_id="puente-router", port=9101)
    assert again.transactional_id == RouterSettings(port=9101).transactional_id
    assert again.transactional_id.endswith("-9101")
    assert again.transactional_id != RouterSettings(port=9102).transactional_id
