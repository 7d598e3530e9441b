"""Settings of the policy and the subject keys (env prefix ``PUENTE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings


class PolicySettings(BaseSettings):
    """Where the hub key comes from.

    ``PUENTE_HUB_KEY`` (hex or base64, at least 32 bytes) or ``PUENTE_HUB_KEY_FILE``
    (a file holding the same). With neither, a development key is generated on
    first run under ``<PUENTE_STATE_DIR>/keys/hub.key``.
    """

    model_config = SettingsConfigDict(env_prefix="PUENTE_", extra="ignore")

    hub_key: SecretStr | None = None
    hub_key_file: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
