"""Settings of the gateway (env prefix ``PUENTE_GATEWAY_``)."""

from __future__ import annotations

from pathlib import Path
from typing import Final

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import (
    EventLimitSettings,
    HubSettings,
    KafkaSettings,
    TopicSettings,
)

# Bytes a Kafka record costs beyond its key, value and header text (record and batch
# framing), so a record the gateway accepts also fits the producer's request size.
RECORD_OVERHEAD_BYTES: Final = 1024


class GatewaySettings(BaseSettings):
    """HTTP listener, outbox and relay tuning, plus the shared groups."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_GATEWAY_", extra="ignore")

    host: str = "127.0.0.1"
    port: int = Field(default=8080, ge=0, le=65535)
    # /metrics, /docs and /openapi.json are served here only, not on the public port.
    admin_host: str = "127.0.0.1"
    admin_port: int = Field(default=8081, ge=0, le=65535)
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
    # Kafka consumers shared by every GET of deliveries and rejections; a GET that
    # finds them all busy waits this long for one, then answers 503.
    deliveries_consumers: int = Field(default=4, ge=1, le=256)
    # Production: a folder of puente-gateway-reader.<id> password files; each
    # institution's deliveries are then read under its own Kafka principal (the
    # relay's cannot read them). None: read with this gateway's own credentials.
    reader_credentials_dir: Path | None = None
    deliveries_pool_wait_ms: int = Field(default=2000, ge=0)
    # Requests per second each institution may make (token bucket); 0: no limit.
    rate_limit_per_s: float = Field(default=100.0, ge=0.0)
    rate_limit_burst: int = Field(default=200, ge=1)
    # Lifetime of a new credential unless `token create --expires-in` says otherwise.
    token_expiry_days: int = Field(default=90, ge=1, le=3650)

    # The router's limit on one encoded event (PUENTE_ROUTER_MAX_EVENT_BYTES) is the
    # gateway's, so the gateway accepts nothing the router refuses.
    router: EventLimitSettings = Field(default_factory=EventLimitSettings)

    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    def max_event_bytes(self) -> int:
        """The largest encoded Avro value of one event the gateway accepts."""
        return self.router.max_event_bytes

    def max_record_bytes(self) -> int:
        """The largest Kafka record (value, key and headers) the producer may send."""
        return self.kafka.max_request_size - RECORD_OVERHEAD_BYTES

    def outbox_file(self) -> Path:
        """Where the outbox database lives."""
        return self.outbox_path or self.hub.state_dir / "gateway" / "outbox.sqlite"

    def tokens_file(self) -> Path:
        """Where the credential hashes live."""
        return self.tokens_path or self.hub.state_dir / "gateway" / "tokens.sqlite"
