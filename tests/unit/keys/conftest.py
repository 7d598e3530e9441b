"""Fixtures of the key tests: a clean environment and fresh announcements."""

from __future__ import annotations

import pytest

from services.runtime import environment


@pytest.fixture(autouse=True)
def clean_environment(monkeypatch: pytest.MonkeyPatch) -> None:
    """No PUENTE_* key settings from the caller's shell; nothing announced yet."""
    for name in (
        "PUENTE_ENV",
        "PUENTE_HUB_KEY",
        "PUENTE_HUB_KEYS",
        "PUENTE_HUB_KEY_FILE",
        "PUENTE_AUDIT_SIGNING_KEY",
        "PUENTE_AUDIT_SIGNING_KEY_FILE",
        "PUENTE_OVERSIGHT_CREDENTIAL",
        "PUENTE_AUDIT_CREDENTIALS_PATH",
        "PUENTE_STATE_DIR",
    ):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setattr(environment, "_announced", set())
