"""Audit ledger settings (env prefix ``PUENTE_AUDIT_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field, SecretStr
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.contracts import topics
from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings


class AuditSettings(BaseSettings):
    """Where the ledger lives, what it consumes, how often it signs checkpoints."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_AUDIT_", extra="ignore")

    port: int = Field(default=9102, ge=0, le=65535)
    host: str = "127.0.0.1"
    ledger_path: Path | None = None  # default: <state_dir>/audit/ledger.sqlite
    topic: str = topics.AUDIT
    checkpoint_topic: str = topics.AUDIT_CHECKPOINTS
    # The group is used only to report progress (lag) to Kafka: the ledger's own
    # stored positions decide where consumption resumes.
    group_id: str = "puente-audit"
    max_batch: int = Field(default=500, ge=1)
    checkpoint_every: int = Field(default=1000, ge=1)
    checkpoint_seconds: float = Field(default=30.0, gt=0)
    signing_key: SecretStr | None = None  # PEM or base64 of the raw 32 bytes
    signing_key_file: Path | None = None
    # The key before the current one: at start, it signs the rotation to the new key.
    previous_signing_key_file: Path | None = None
    # The public key verifiers trust (pinned); default: the signing key's public half.
    verify_key: str | None = None  # PEM or base64 of the raw 32 bytes
    verify_key_file: Path | None = None
    # Append-only JSON lines of signed heads, kept outside the state dir.
    witness_file: Path | None = None
    credentials_path: Path | None = None  # default: <state_dir>/audit/credentials.sqlite
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def ledger_file(self) -> Path:
        """The SQLite ledger file."""
        return self.ledger_path or self.hub.state_dir / "audit" / "ledger.sqlite"

    @property
    def credentials_file(self) -> Path:
        """The audit API's credential store."""
        return (
            self.credentials_path or self.hub.state_dir / "audit" / "credentials.sqlite"
        )

    @property
    def development_key_file(self) -> Path:
        """Where a development signing key is generated when none is configured."""
        return self.hub.state_dir / "keys" / "audit-signing.key"
