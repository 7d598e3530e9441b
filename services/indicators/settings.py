"""Indicators service settings (env prefix ``PUENTE_INDICATORS_``)."""

from __future__ import annotations

from pathlib import Path
from typing import ClassVar, Final

from pydantic import Field
from pydantic_settings import SettingsConfigDict

from services.contracts.catalog import Catalog
from services.indicators.catalogue import CATALOGUE_FILE, Catalogue, load_catalogue
from services.policy import Policy, load_policy
from services.runtime.settings import RecipientServiceSettings

# The service's identity in the access policy: it counts what the policy delivers to it.
INDICATORS_ID: Final = "hub_indicators"


class IndicatorsSettings(RecipientServiceSettings):
    """What the service reads, where it keeps its counts, where it listens."""

    model_config = SettingsConfigDict(env_prefix="PUENTE_INDICATORS_", extra="ignore")
    STATE_DB: ClassVar[tuple[str, str]] = ("indicators", "counts.sqlite")

    port: int = Field(default=9104, ge=0, le=65535)
    recipient: str = INDICATORS_ID
    # Under the group prefix the ACLs grant the service's identity (hub_indicators.*).
    group_id: str = f"{INDICATORS_ID}.counter"
    catalogue_path: Path | None = None  # default: <policy_dir>/indicators.toml
    # How often the current-period totals exported as gauges are worked out again.
    gauge_seconds: float = Field(default=60.0, gt=0)
    # Whole days after a period ends before its tables are released (and frozen):
    # records typed in late still get into the published numbers.
    release_after_days: int = Field(default=3, ge=0, le=366)
    # How often the service looks for periods due for release.
    release_seconds: float = Field(default=60.0, gt=0)

    @property
    def catalogue_file(self) -> Path:
        """The indicator catalogue."""
        return self.catalogue_path or self.hub.policy_dir / CATALOGUE_FILE


def load_catalogue_for(settings: IndicatorsSettings) -> tuple[Catalog, Policy, Catalogue]:
    """The schema catalog (with the policy's projections), policy and catalogue."""
    catalog = Catalog.load(settings.hub.schemas_dir)
    policy = load_policy(settings.hub.policy_dir, catalog)
    catalogue = load_catalogue(
        settings.hub.policy_dir, catalog, policy, settings.catalogue_file
    )
    return catalog, policy, catalogue
