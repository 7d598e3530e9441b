"""PUENTE_ENV=production: no service starts on a development key; development says so."""

from __future__ import annotations

import logging
import os
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import SecretStr

from services.audit.app import signing_key
from services.audit.settings import AuditSettings
from services.runtime.environment import ExplicitKeyRequiredError
from services.runtime.hub_key_store import HubKeySettings, load_hub_keys
from services.runtime.settings import REPO_ROOT, HubSettings

KEY = bytes(range(32, 64))


def _puente(state: Path, *args: str, **extra: str) -> subprocess.CompletedProcess[str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PUENTE_")}
    env |= {"PUENTE_STATE_DIR": str(state), "PUENTE_ENV": "production"} | extra
    # A closed port: a service that got past its keys would fail later, differently.
    env["PUENTE_KAFKA_BOOTSTRAP_SERVERS"] = "127.0.0.1:9"
    return subprocess.run(
        [sys.executable, "-m", "services", *args],
        cwd=REPO_ROOT, env=env, capture_output=True, text=True, timeout=90, check=False,
    )  # fmt: skip


def test_the_router_in_production_without_a_hub_key_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    done = _puente(tmp_path, "run", "router")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert lines == [
        "error: PUENTE_ENV=production and no hub key is configured: set "
        "PUENTE_HUB_KEYS, PUENTE_HUB_KEY or PUENTE_HUB_KEY_FILE "
        "(development keys are never used in production)"
    ]
    assert not (tmp_path / "keys").exists()


def test_the_audit_service_in_production_without_a_signing_key_refuses_in_one_line(
    tmp_path: Path,
) -> None:
    done = _puente(tmp_path, "run", "audit")
    assert done.returncode == 1
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1
    assert lines[0].startswith(
        "error: PUENTE_ENV=production and no audit signing key is configured"
    )
    assert not list(tmp_path.rglob("*.key"))


def test_a_production_hub_key_must_be_explicit_even_if_a_development_one_exists(
    tmp_path: Path,
) -> None:
    development = HubSettings(state_dir=tmp_path)
    load_hub_keys(HubKeySettings(hub=development))  # made in development
    production = HubSettings(state_dir=tmp_path, env="production")
    with pytest.raises(ExplicitKeyRequiredError, match="PUENTE_HUB_KEYS"):
        load_hub_keys(HubKeySettings(hub=production))
    explicit = HubKeySettings(hub_key=SecretStr(KEY.hex()), hub=production)
    assert load_hub_keys(explicit).versions == {1: KEY}


def test_a_production_signing_key_must_be_explicit(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PUENTE_ENV", "Production")
    settings = AuditSettings(hub=HubSettings(state_dir=tmp_path))
    with pytest.raises(ExplicitKeyRequiredError, match="PUENTE_AUDIT_SIGNING_KEY"):
        signing_key(settings)
    assert not settings.development_key_file.exists()


def test_development_keys_work_and_are_announced_once_without_the_secret(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    settings = HubKeySettings(hub=HubSettings(state_dir=tmp_path))
    audit = AuditSettings(hub=HubSettings(state_dir=tmp_path))
    with caplog.at_level(logging.WARNING):
        first = load_hub_keys(settings)
        assert load_hub_keys(settings) == first
        signing_key(audit)
        signing_key(audit)
    announced = [
        r.getMessage() for r in caplog.records if r.name == "services.runtime.environment"
    ]
    assert len(announced) == 2
    assert "development hub key" in announced[0]
    assert "development audit signing key" in announced[1]
    secret = first.versions[1].hex()
    assert all(secret not in r.getMessage() for r in caplog.records)
