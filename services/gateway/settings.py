"""Settings of the gateway (env prefix ``PUENTE_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings


class GatewaySettings(BaseSettings):
    """HTTP listener, outbox and relay tuning, plus the shared groups."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # None: <state_dir>/gateway/outbox.sqlite and tokens.sqlite.
    outbox_path: Path | None = None
    tokens_path: Path | None = None
    # Unsent rows the outbox holds before POSTs answer 503 (broker down for long).
    outbox_limit: int = Field(default=200_000, ge=1)
    # 500 events of a few KB each fit; anything larger is refused before parsing.
    max_body_bytes: int = Field(default=4 * 1024 * 1024, ge=1024)
    batch_max: int = Field(default=500, ge=1, le=10_000)
    # Processes that validate and encode large batches off the event loop (0: none,
    # everything in the gateway's own process). Two measured best on two cores.
    prepare_workers: int = Field(default=2, ge=0, le=64)
    # Group commit: how long the writer waits for more requests before one fsync.
    group_commit_ms: float = Field(default=1.0, ge=0.0, le=100.0)
    group_commit_max: int = Field(default=2000, ge=1)
    relay_batch: int = Field(default=500, ge=1)
    relay_backoff_max_s: float = Field(default=5.0, gt=0)
    # Sent rows are kept this long so a repeated POST still answers 200 (idempotency).
    dedupe_retention_hours: float = Field(default=72.0, gt=0)
    retry_after_s: int = Field(default=5, ge=1)
    deliveries_max: int = Field(default=500, ge=1)
    deliveries_wait_ms: int = Field(default=1000, ge=10)

    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    def outbox_file(self) -> Path:
        """Where the outbox database lives."""
        return self.outbox_path or self.hub.state_dir / "gateway" / "outbox.sqlite"

    def tokens_file(self) -> Path:
        """Where the credential hashes live."""
        return self.tokens_path or self.hub.state_dir / "gateway" / "tokens.sqlite"
