"""Demo settings (env prefix ``PUENTE_DEMO_``); rate, duration and seed are options."""

from __future__ import annotations

from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from services.runtime.settings import HubSettings, KafkaSettings, TopicSettings


class DemoSettings(BaseSettings):
    """How the demo paces, waits and reports."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_DEMO_", extra="ignore")

    # Share of inputs that are malformed or unauthorised, so rejections show.
    bad_share: float = Field(default=0.02, ge=0.0, le=1.0)
    tick_seconds: float = Field(default=0.1, gt=0.0, le=1.0)
    # The router's first group join takes ~3 s on the embedded broker.
    ready_seconds: float = Field(default=30.0, gt=0.0)
    # After publishing stops: how long to wait for the router to catch up, at most,
    # and how long without progress before giving up earlier.
    drain_seconds: float = Field(default=20.0, ge=0.0)
    stall_seconds: float = Field(default=5.0, gt=0.0)
    refresh_per_second: float = Field(default=2.0, gt=0.0, le=20.0)
    # Without a terminal: one progress line every this many seconds.
    progress_seconds: float = Field(default=5.0, gt=0.0)
    # The referral tracker checks deadlines this often in the demo (a minute in
    # production), so overdue notices show while it runs.
    referral_check_seconds: float = Field(default=3.0, gt=0.0)
    hub: HubSettings = Field(default_factory=HubSettings)
    kafka: KafkaSettings = Field(default_factory=KafkaSettings)
    topics: TopicSettings = Field(default_factory=TopicSettings)
