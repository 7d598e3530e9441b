"""The loaded, validated policy: institutions, rules, aggregate grants and decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from services.policy.conditions import Condition
from services.policy.projection import REKEYED_VIEWS, Projection, View

# Why a rule whose condition matched did not deliver (audit `withheld_reason`).
CONSENT_NOT_OBTAINED: Final = "consent_not_obtained"
CONSENT_WITHDRAWN: Final = "consent_withdrawn"
CONSENT_SCOPE_MISSING: Final = "consent_scope_missing"
UNKNOWN_RECIPIENT: Final = "unknown_recipient"
CONDITION_ERROR: Final = "condition_error"
WITHHELD_REASONS: Final = (
    CONSENT_NOT_OBTAINED,
    CONSENT_WITHDRAWN,
    CONSENT_SCOPE_MISSING,
    UNKNOWN_RECIPIENT,
    CONDITION_ERROR,
)


@dataclass(frozen=True, slots=True)
class Institution:
    """A member of the Mechanism."""

    id: str
    name: str
    working_groups: tuple[str, ...]
    publishes: frozenset[str]
    stream: bool = True
    note: str = ""


@dataclass(frozen=True, slots=True)
class Rule:
    """One disclosure rule, checked against the schemas of its event type."""

    id: str
    event_type: str
    view: View
    purpose: str
    legal_basis: str
    recipient: str | None = None
    recipient_field: str | None = None
    recipients: frozenset[str] = frozenset()
    condition: Condition | None = None
    consent_scopes: tuple[str, ...] = ()
    consent_override: bool = False
    grants: tuple[str, ...] = ()
    removes: tuple[str, ...] = ()
    note: str = ""
    review_by: date | None = None
    source_file: str = ""
    projections: Mapping[int, Projection] = field(default_factory=dict, repr=False)

    @property
    def latest(self) -> Projection:
        """The projection of the newest schema version."""
        return self.projections[max(self.projections)]

    @property
    def recipient_text(self) -> str:
        """Who receives, in words (for explain and check output)."""
        if self.recipient is not None:
            return self.recipient
        return (
            f"{self.recipient_field} (when it names {', '.join(sorted(self.recipients))})"
        )

    def may_reach(self, institution: str) -> bool:
        """Whether some record could make this rule deliver to ``institution``."""
        return institution == self.recipient or institution in self.recipients


@dataclass(frozen=True, slots=True)
class AggregateGrant:
    """An aggregate-only grant: counts from the indicators service, no records."""

    recipient: str
    event_types: tuple[str, ...]
    purpose: str
    legal_basis: str
    by: tuple[str, ...] = ()
    note: str = ""


@dataclass(frozen=True, slots=True)
class Decision:
    """What one rule decided for one record and one recipient."""

    rule_id: str
    recipient: str
    event_type: str
    view: View
    purpose: str
    legal_basis: str
    delivered: bool
    withheld_reason: str | None
    projection: Projection

    @property
    def rekeyed(self) -> bool:
        """Whether the recipient gets a re-keyed subject key (PSEUDO_S, PSEUDO)."""
        return self.view in REKEYED_VIEWS
