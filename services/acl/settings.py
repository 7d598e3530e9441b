"""Settings of the ACL and topic plan (env prefix ``PUENTE_ACL_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings


class AclSettings(BaseSettings):
    """The SCRAM user names the hub's services connect as (their Kafka principals).

    They must match each service's ``PUENTE_KAFKA_SASL_USERNAME``. The consumer groups
    and audit topics come from the router's and audit's own settings.
    """

    model_config = SettingsConfigDict(env_prefix="PUENTE_ACL_", extra="ignore")

    router_principal: str = "puente-router"
    gateway_principal: str = "puente-gateway"
    audit_principal: str = "puente-audit"
    # The gateway reads institution <id>'s deliveries as <prefix><id> (plan docstring).
    gateway_reader_prefix: str = "puente-gateway-reader."
    # One password file per SCRAM user `puente acl apply` creates (services.acl.users).
    users_dir: Path | None = None
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
