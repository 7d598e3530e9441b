"""Referral tracker settings (env prefix ``PUENTE_REFERRALS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.contracts import topics
from services.runtime.settings import RecipientServiceSettings

# The tracker's identity in the access policy: it reads what the policy delivers to it.
TRACKER_ID: Final = "hub_referrals"
DEADLINES_FILE: Final = "referral_deadlines.toml"


class ReferralsSettings(RecipientServiceSettings):
    """What the tracker reads, where it keeps state, how often it checks deadlines."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_REFERRALS_", extra="ignore")
    STATE_DB: ClassVar[tuple[str, str]] = ("referrals", "tracker.sqlite")

    port: int = Field(default=9103, ge=0, le=65535)
    recipient: str = TRACKER_ID
    # Under the group prefix the ACLs grant the tracker's identity (hub_referrals.*).
    group_id: str = f"{TRACKER_ID}.tracker"
    deadlines_path: Path | None = None  # default: <policy_dir>/referral_deadlines.toml
    check_seconds: float = Field(default=60.0, gt=0)

    @property
    def topic(self) -> str:
        """The topic the policy delivers referral events to the tracker on."""
        return topics.outbound(self.recipient, "referral")

    @property
    def deadlines_file(self) -> Path:
        """The deadlines policy."""
        return self.deadlines_path or self.hub.policy_dir / DEADLINES_FILE
