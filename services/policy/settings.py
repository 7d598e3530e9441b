"""Settings of the policy and the subject keys (env prefix ``PUENTE_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings


class PolicySettings(BaseSettings):
    """Where the hub keys come from (set exactly one, or none in development).

    ``PUENTE_HUB_KEYS``: every version, ``k1:<hex>,k2:<hex>`` (commas or newlines).
    ``PUENTE_HUB_KEY``: one key, hex or base64 of at least 32 bytes (version 1), or
    the versioned form. ``PUENTE_HUB_KEY_FILE``: a file holding either form, one
    ``kN:<hex>`` per line. The newest version computes new subject keys; older
    ones are kept for data-subject requests. With none set and ``PUENTE_ENV`` not
    ``production``, a development key file is generated on first run under
    ``<PUENTE_STATE_DIR>/keys/hub.key``.
    """

    model_config = SettingsConfigDict(env_prefix="PUENTE_", extra="ignore")

    hub_keys: SecretStr | None = None
    hub_key: SecretStr | None = None
    hub_key_file: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
