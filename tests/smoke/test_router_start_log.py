"""The router's start log on the embedded broker, which has no transactions."""

from __future__ import annotations

import logging
import uuid
from pathlib import Path

import pytest
from prometheus_client import CollectorRegistry

from services.router.app import build_service
from services.router.settings import RouterSettings
from services.runtime.embedded import free_port
from services.runtime.settings import HubSettings, KafkaSettings

pytestmark = [pytest.mark.smoke]

NO_TRANSACTIONS = (
    "transactions not available on this broker; exactly-once off, "
    "at-least-once with event-id de-duplication"
)


async def test_a_router_without_transactions_says_so_once_and_logs_no_error_at_start(
    kafka: KafkaSettings, state_dir: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = RouterSettings.model_validate(
        {
            "group_id": f"router-log-{uuid.uuid4().hex[:8]}",
            "port": free_port(),
            "hub": HubSettings(state_dir=state_dir),
            "kafka": kafka,
            "transactions": "auto",
        }
    )
    service = build_service(settings, CollectorRegistry())
    with caplog.at_level(logging.INFO):
        await service.start()
    try:
        errors = [
            f"{r.name}: {r.getMessage()}"
            for r in caplog.records
            if r.levelno >= logging.ERROR
        ]
        assert errors == []
        said = [r for r in caplog.records if NO_TRANSACTIONS in r.getMessage()]
        assert len(said) == 1
        assert said[0].levelno == logging.INFO
        assert said[0].name == "services.router.app"
        assert service.health()["transactions"] is False
    finally:
        await service.stop()
