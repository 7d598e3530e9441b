"""Router settings (env prefix ``PUENTE_ROUTER_``)."""

from __future__ import annotations

from pathlib import Path

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings


class RouterSettings(BaseSettings):
    """How the router consumes, decides and remembers."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_ROUTER_", extra="ignore")

    port: int = Field(default=9101, ge=0, le=65535)
    host: str = "127.0.0.1"
    group_id: str = "puente-router"
    inbound_pattern: str = r"hub\.in\.[a-z][a-z0-9_]*\.[a-z_]+"
    max_batch: int = Field(default=500, ge=1)
    # Its own fetch wait: the embedded broker often holds a fetch over many inbound
    # partitions for most of its wait even when records arrived (measured: p50 22 ms
    # per hop at 50 ms, 12-13 ms at 10 ms), but every fetch costs it CPU: idle, the
    # broker burns 17 % of a core at 50 ms, 22 % at 25 ms, 34 % at 10 ms, and under
    # load that CPU is what delays everything. 25 ms measured best end to end.
    fetch_max_wait_ms: int = Field(default=25, ge=1)
    # A record above this is refused as too_large; it is also the cap on the original
    # bytes echoed back in a rejection.
    max_event_bytes: int = Field(default=512 * 1024, ge=1024)
    # How far in the future occurred_at/recorded_at may lie (clock skew between systems).
    future_skew_seconds: int = Field(default=300, ge=0)
    dedupe_path: Path | None = None  # default: <state_dir>/router/dedupe.sqlite
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def dedupe_file(self) -> Path:
        """Where the event-id memory lives."""
        return self.dedupe_path or self.hub.state_dir / "router" / "dedupe.sqlite"
