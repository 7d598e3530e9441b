"""Settings of the ACL and topic plan (env prefix ``PUENTE_ACL_``)."""

from __future__ import annotations

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
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
