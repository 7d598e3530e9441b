"""The loaded, validated policy: institutions, rules, aggregate grants and decisions."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import date
from typing import Final

from services.policy.conditions import Condition
from services.policy.projection import REKEYED_VIEWS, Generalisation, Projection, View

# Why a rule whose condition matched did not deliver (audit `withheld_reason`).
CONSENT_NOT_OBTAINED: Final = "consent_not_obtained"
CONSENT_WITHDRAWN: Final = "consent_withdrawn"
CONSENT_SCOPE_MISSING: Final = "consent_scope_missing"
UNKNOWN_RECIPIENT: Final = "unknown_recipient"
CONDITION_ERROR: Final = "condition_error"
# The record's purposes do not include the rule's, and its basis rests on them.
PURPOSE_NOT_DECLARED: Final = "purpose_not_declared"
# consent.disclosure_to_other_institutions is false and the rule is not the owner's.
DISCLOSURE_NOT_ALLOWED: Final = "disclosure_not_allowed"
# The record's values make it highly sensitive for this rule's purpose and view.
ESCALATED_SENSITIVITY: Final = "escalated_sensitivity"
# A consent override was claimed whose legal condition does not hold.
OVERRIDE_NOT_APPLICABLE: Final = "override_not_applicable"
WITHHELD_REASONS: Final = (
    CONSENT_NOT_OBTAINED,
    CONSENT_WITHDRAWN,
    CONSENT_SCOPE_MISSING,
    UNKNOWN_RECIPIENT,
    CONDITION_ERROR,
    PURPOSE_NOT_DECLARED,
    DISCLOSURE_NOT_ALLOWED,
    ESCALATED_SENSITIVITY,
    OVERRIDE_NOT_APPLICABLE,
)
# Legal bases that do not rest on the purposes a source declared for a record.
BASES_WITHOUT_DECLARED_PURPOSE: Final = frozenset(
    {"LEGAL_MANDATE", "VITAL_INTEREST", "BEST_INTEREST_OF_CHILD"}
)
# The one basis withdrawn consent does not stop: a stated legal mandate.
BASES_SURVIVING_WITHDRAWAL: Final = frozenset({"LEGAL_MANDATE"})


@dataclass(frozen=True, slots=True)
class Institution:
    """A member of the Mechanism."""

    id: str
    name: str
    working_groups: tuple[str, ...]
    publishes: frozenset[str]
    stream: bool = True
    sensitive: bool = False
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
    only: tuple[str, ...] = ()
    generalise: tuple[Generalisation, ...] = ()
    owner: bool = False
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
class Escalation:
    """Values that make a record highly sensitive, but for the purposes named."""

    id: str
    purposes: frozenset[str]
    conditions: Mapping[str, Condition]  # event type -> condition
    note: str = ""


@dataclass(frozen=True, slots=True)
class Override:
    """A consent override reason and, per event type, when its condition holds."""

    reason: str
    conditions: Mapping[str, Condition]
    note: str = ""


@dataclass(frozen=True, slots=True)
class Safeguards:
    """Record-level checks that apply to every rule (``safeguards.toml``)."""

    escalations: tuple[Escalation, ...] = ()
    overrides: Mapping[str, Override] = field(default_factory=dict)


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
