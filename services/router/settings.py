"""Router settings (env prefix ``PUENTE_ROUTER_``)."""

from __future__ import annotations

import socket
from pathlib import Path
from typing import Literal

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import (
    MAX_EVENT_BYTES,
    HubSettings,
    KafkaSettings,
    TopicSettings,
)


class RouterSettings(BaseSettings):
    """How the router consumes, decides and remembers."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_ROUTER_", extra="ignore")

    port: int = Field(default=9101, ge=0, le=65535)
    host: str = "127.0.0.1"
    group_id: str = "puente-router"
    inbound_pattern: str = r"hub\.in\.[a-z][a-z0-9_]*\.[a-z_]+"
    max_batch: int = Field(default=500, ge=1)
    # Its own fetch wait: on the embedded broker a shorter wait answers sooner, but
    # every fetch costs it CPU (idle, with one partition per topic: 10 % of a core
    # at 25 ms, 14 % at 15 ms, 17 % at 10 ms), and under load that CPU delays
    # everything. End to end at 1,000 events/s, p99: 66-72 ms at 25, 51-55 at 15,
    # 57-65 at 10; 5 ms was no better (96-200 ms in a slow spell, as 15 ms there).
    fetch_max_wait_ms: int = Field(default=15, ge=1)
    # A record above this is refused as too_large; it is also the cap on the original
    # bytes echoed back in a rejection.
    max_event_bytes: int = Field(default=MAX_EVENT_BYTES, ge=1024)
    # How far in the future occurred_at/recorded_at may lie (clock skew between systems).
    future_skew_seconds: int = Field(default=300, ge=0)
    dedupe_path: Path | None = None  # default: <state_dir>/router/dedupe.sqlite
    # Exactly-once routing: consume, deliver, audit and commit in one Kafka
    # transaction. "auto" turns it on when the broker grants this router a producer
    # id for its transactional id at start (Apache Kafka does; the embedded broker
    # does not, and stays at-least-once with event-id de-duplication).
    transactions: Literal["auto", "on", "off"] = "auto"
    # Names this router instance in its transactional id; it must stay the same
    # across restarts (so a restarted router aborts what its killed predecessor left
    # open) and differ between routers running at once (one fences the other).
    # Default: the host name and the ops port.
    instance_id: str | None = Field(default=None, pattern=r"^[A-Za-z0-9._-]{1,100}$")
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)

    @property
    def transactional_id(self) -> str:
        """``<group>.<instance>``: the ACL plan grants the router ``<group>.*``."""
        instance = self.instance_id or f"{socket.gethostname()}-{self.port}"
        return f"{self.group_id}.{instance}"

    @property
    def dedupe_file(self) -> Path:
        """Where the event-id memory lives."""
        return self.dedupe_path or self.hub.state_dir / "router" / "dedupe.sqlite"
