"""Settings shared by every service (pydantic-settings, env prefix ``PUENTE_``).

Each group reads its own prefix, so the contract names (docs/contracts.md) hold:
``PUENTE_KAFKA_BOOTSTRAP_SERVERS``, ``PUENTE_STATE_DIR``, ``PUENTE_<SERVICE>_PORT``.
Services compose these groups in their own ``Settings``.
"""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final, Literal

from pydantic import Field, SecretStr, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

REPO_ROOT: Final = Path(__file__).resolve().parents[2]
# The largest encoded event the router takes (above it: too_large). The gateway reads
# the same setting, so it accepts nothing the router would refuse.
MAX_EVENT_BYTES: Final = 512 * 1024


class EventLimitSettings(BaseSettings):
    """``PUENTE_ROUTER_MAX_EVENT_BYTES`` for a service that must match the router."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_ROUTER_", extra="ignore")

    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)


class KafkaSettings(BaseSettings):
    """How to reach Kafka. No bootstrap servers means: use the embedded broker."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_KAFKA_", extra="ignore")

    bootstrap_servers: str | None = None
    security_protocol: Literal["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"] = (
        "PLAINTEXT"
    )
    sasl_mechanism: Literal["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"] | None = None
    sasl_username: str | None = None
    sasl_password: SecretStr | None = None
    ssl_cafile: Path | None = None
    ssl_certfile: Path | None = None
    ssl_keyfile: Path | None = None
    # ~3 s group joins at a 6 s session timeout (on either broker), and a 50 ms fetch
    # wait: low latency without idle burn.
    session_timeout_ms: int = Field(default=6000, ge=1000)
    heartbeat_interval_ms: int = Field(default=2000, ge=100)
    fetch_max_wait_ms: int = Field(default=50, ge=1)
    request_timeout_ms: int = Field(default=30000, ge=1000)
    linger_ms: int = Field(default=5, ge=0)
    max_request_size: int = Field(default=1_048_576, ge=1024)
    # Idempotent producers: the broker drops a batch a producer sends again after a
    # lost acknowledgement (a leader change, a timeout), so retries add no duplicate.
    # "auto" asks the broker once per process for a producer id (Apache Kafka grants
    # one; the embedded broker does not, and its producers stay at-least-once),
    # "on" requires it, "off" never asks.
    idempotence: Literal["auto", "on", "off"] = "auto"
    embedded_port: int = Field(default=19092, ge=0, le=65535)


class TopicSettings(BaseSettings):
    """Partition counts: final at creation (the embedded broker cannot add any)."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_TOPICS_", extra="ignore")

    # One partition per topic by default: the embedded broker's cost per fetch grows
    # with the partitions fetched and the record batches stored in them (at 1,000
    # events/s: end-to-end p99 140 ms with 4 and 2, 66-87 ms with 1 and 1). There
    # are 20 inbound topics, so up to 20 routers can still share the work; the
    # compose file sets 4 and 2 for Apache Kafka.
    inbound_partitions: int = Field(default=1, ge=1)
    outbound_partitions: int = Field(default=1, ge=1)
    rejected_partitions: int = Field(default=1, ge=1)
    # One partition keeps the audit stream totally ordered for the hash chain.
    audit_partitions: int = Field(default=1, ge=1)
    replication_factor: int = Field(default=1, ge=1)


Environment = Literal["development", "production"]


class HubSettings(BaseSettings):
    """Where the hub finds its schemas and policy and keeps its local state.

    ``PUENTE_ENV`` is ``development`` (the default: development keys are generated
    under the state dir, and their use is announced) or ``production`` (every key
    must be configured explicitly; a service without one refuses to start).
    """

    model_config = SettingsConfigDict(env_prefix="PUENTE_", extra="ignore")

    state_dir: Path = Path(".puente")
    schemas_dir: Path = REPO_ROOT / "schemas"
    policy_dir: Path = REPO_ROOT / "deploy" / "policy"
    log_level: Literal["DEBUG", "INFO", "WARNING", "ERROR"] = "INFO"
    env: Environment = "development"

    @field_validator("env", mode="before")
    @classmethod
    def _lowercase(cls, value: object) -> object:
        # "Production" in an env file means production, not a start-up failure.
        return value.strip().lower() if isinstance(value, str) else value


class RecipientServiceSettings(BaseSettings):
    """What a hub service that receives deliveries and keeps a state database shares.

    A subclass sets its env prefix, port, recipient identity and consumer group, and
    names its database file under ``<state_dir>`` in ``STATE_DB``.
    """

    STATE_DB: ClassVar[tuple[str, str]] = ("service", "state.sqlite")

    host: str = "127.0.0.1"
    max_batch: int = Field(default=500, ge=1)
    db_path: Path | None = None  # default: <state_dir>/<STATE_DB>
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def db_file(self) -> Path:
        """The service's SQLite state database."""
        return self.db_path or self.hub.state_dir.joinpath(*self.STATE_DB)
