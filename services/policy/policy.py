"""The access policy at run time: publish rights and the per-record decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from services.contracts.catalog import SchemaEntry
from services.contracts.ids import INSTITUTION_ID
from services.policy import model
from services.policy.errors import ConditionError
from services.policy.model import (
    AggregateGrant,
    Decision,
    Institution,
    Rule,
    Safeguards,
)
from services.policy.projection import Projection


class Policy:
    """Institutions, publish rights and disclosure rules, validated (see `load_policy`).

    ``decide`` applies the rules of an event type in file order. For each recipient
    the first rule that matches and passes its consent check delivers; later rules
    for that recipient are skipped, so a recipient gets at most one projection of a
    record. A rule that matches but fails a check is reported as withheld (with the
    reason) and the next rule may still deliver. The checks, in order: the source's
    no-disclosure flag (only the owner's rules pass), withdrawn consent (only a
    legal mandate passes), purpose limitation (the rule's purpose must be declared
    unless its basis does not rest on declared purposes), consent scopes and
    overrides (an override counts only where its legal condition holds), and
    value-based escalation (a non-FULL view of a record whose values reveal e.g.
    gender-based violence passes only for the purposes that escalation names).
    """

    def __init__(
        self,
        version: str,
        institutions: Mapping[str, Institution],
        rules: Sequence[Rule],
        aggregates: Sequence[AggregateGrant] = (),
        safeguards: Safeguards | None = None,
    ) -> None:
        self.version = version
        self.safeguards = safeguards or Safeguards()
        self.institutions: Mapping[str, Institution] = MappingProxyType(
            dict(institutions)
        )
        self.rules: tuple[Rule, ...] = tuple(rules)
        self.aggregates: tuple[AggregateGrant, ...] = tuple(aggregates)
        self._by_type: dict[str, tuple[Rule, ...]] = {}
        for rule in self.rules:
            self._by_type[rule.event_type] = (
                *self._by_type.get(rule.event_type, ()),
                rule,
            )
        self.publish_rights: Mapping[str, frozenset[str]] = MappingProxyType(
            {i.id: i.publishes for i in self.institutions.values() if i.publishes}
        )
        receive: dict[str, set[str]] = {}
        for rule in self.rules:
            for recipient in rule.recipients:
                receive.setdefault(recipient, set()).add(rule.event_type)
        self.receive_rights: Mapping[str, frozenset[str]] = MappingProxyType(
            {k: frozenset(v) for k, v in sorted(receive.items())}
        )
        # Decisions for member recipients, made once: a few per record on the hot
        # path, from a bounded set (rules x members x reasons x versions).
        self._decisions: dict[tuple[str, str, str | None, int | None], Decision] = {}

    def knows(self, institution: str) -> bool:
        """Whether ``institution`` is a member of the Mechanism."""
        return institution in self.institutions

    def may_publish(self, source: str, event_type: str) -> bool:
        """Whether ``source`` holds the right to publish ``event_type``."""
        return event_type in self.publish_rights.get(source, frozenset())

    def rules_for(self, recipient: str, event_type: str | None = None) -> list[Rule]:
        """The rules that may deliver to ``recipient`` (of one event type), in order."""
        return [
            r
            for r in self.rules
            if r.may_reach(recipient) and event_type in (None, r.event_type)
        ]

    def projections_for(self, recipient: str) -> list[tuple[Projection, list[Rule]]]:
        """Every projected schema (all versions) ``recipient`` may get, with its rules."""
        found: dict[str, tuple[Projection, list[Rule]]] = {}
        for rule in self.rules_for(recipient):
            for projection in rule.projections.values():
                key = f"{projection.entry.name}.v{projection.entry.version}"
                found.setdefault(key, (projection, []))[1].append(rule)
        return [found[k] for k in sorted(found)]

    def schemas(self) -> list[SchemaEntry]:
        """Every schema the rules read (sources) or write (projections), once each."""
        found: dict[int, SchemaEntry] = {}
        for rule in self.rules:
            for projection in rule.projections.values():
                found.setdefault(projection.source.fingerprint, projection.source)
                found.setdefault(projection.entry.fingerprint, projection.entry)
        return list(found.values())

    def decide(
        self, event_type: str, datum: Mapping[str, Any], version: int | None = None
    ) -> list[Decision]:
        """The decisions of every rule whose condition matched ``datum``.

        ``version`` is the writer schema version of ``datum`` (default: the newest);
        it picks the projection whose schema the datum fits.
        """
        decisions: list[Decision] = []
        served: set[str] = set()
        unknown_reported: set[str] = set()
        facts = _Facts(event_type, datum, self.safeguards)
        for rule in self._by_type.get(event_type, ()):
            recipient = rule.recipient
            if recipient is None:
                recipient = field_value(datum, rule.recipient_field or "")
                known = isinstance(recipient, str) and recipient in self.institutions
                if known and recipient not in rule.recipients:
                    continue
            if recipient in served:
                continue
            try:
                if rule.condition is not None and not rule.condition.matches(datum):
                    continue
            except ConditionError:
                decisions.append(
                    _decision(rule, _printable(recipient), model.CONDITION_ERROR, version)
                )
                continue
            if not (isinstance(recipient, str) and recipient in self.institutions):
                if rule.recipient_field not in unknown_reported:
                    unknown_reported.add(rule.recipient_field or "")
                    decisions.append(
                        _decision(
                            rule, _printable(recipient), model.UNKNOWN_RECIPIENT, version
                        )
                    )
                continue
            reason = facts.gate(rule, recipient)
            decisions.append(self._decided(rule, recipient, reason, version))
            if reason is None:
                served.add(recipient)
        return decisions

    def _decided(
        self, rule: Rule, recipient: str, reason: str | None, version: int | None
    ) -> Decision:
        key = (rule.id, recipient, reason, version)
        decision = self._decisions.get(key)
        if decision is None:
            decision = self._decisions[key] = _decision(rule, recipient, reason, version)
        return decision


def _decision(
    rule: Rule, recipient: str, reason: str | None, version: int | None = None
) -> Decision:
    projection = rule.projections.get(version) if version is not None else None
    return Decision(
        rule_id=rule.id,
        recipient=recipient,
        event_type=rule.event_type,
        view=rule.view,
        purpose=rule.purpose,
        legal_basis=rule.legal_basis,
        delivered=reason is None,
        withheld_reason=reason,
        projection=projection or rule.latest,
    )


class _Facts:
    """What the record-level checks need of one record, worked out once."""

    def __init__(
        self, event_type: str, datum: Mapping[str, Any], safeguards: Safeguards
    ) -> None:
        envelope = datum.get("envelope") or {}
        payload = datum.get("payload") or {}
        self.source = envelope.get("source_institution_id")
        self.purposes = frozenset(envelope.get("purposes") or ())
        consent = payload.get("consent")
        self.consent: Mapping[str, Any] = consent if isinstance(consent, Mapping) else {}
        self.withdrawn = self.consent.get("withdrawn_at") is not None
        # The flag is the person's choice only where consent was sought and given;
        # a record without consent carries no choice, and rules needing consent
        # fail on their own.
        self.no_disclosure = (
            self.consent.get("obtained") is True
            and self.consent.get("disclosure_to_other_institutions") is False
        )
        self.override = _override(event_type, datum, safeguards)
        self.escalated = _escalations(event_type, datum, safeguards)

    def gate(self, rule: Rule, recipient: str) -> str | None:
        """None when ``rule`` may deliver to ``recipient``, else why it may not."""
        if self.no_disclosure and not rule.owner and recipient != self.source:
            return model.DISCLOSURE_NOT_ALLOWED
        if self.withdrawn and rule.legal_basis not in model.BASES_SURVIVING_WITHDRAWAL:
            return model.CONSENT_WITHDRAWN
        if (
            rule.legal_basis not in model.BASES_WITHOUT_DECLARED_PURPOSE
            and rule.purpose not in self.purposes
        ):
            return model.PURPOSE_NOT_DECLARED
        reason = self._consent(rule)
        if reason is not None:
            return reason
        if rule.view != "FULL" and any(rule.purpose not in p for p in self.escalated):
            return model.ESCALATED_SENSITIVITY
        return None

    def _consent(self, rule: Rule) -> str | None:
        if not rule.consent_scopes:
            return None
        if rule.consent_override and self.override is True:
            return None
        consent = self.consent
        if not consent.get("obtained"):
            claimed = rule.consent_override and self.override is False
            return (
                model.OVERRIDE_NOT_APPLICABLE if claimed else model.CONSENT_NOT_OBTAINED
            )
        if not set(rule.consent_scopes).issubset(consent.get("scopes") or ()):
            return model.CONSENT_SCOPE_MISSING
        return None


def _override(
    event_type: str, datum: Mapping[str, Any], safeguards: Safeguards
) -> bool | None:
    """Whether the record's consent override holds (None: none was claimed)."""
    payload = datum.get("payload") or {}
    reason = payload.get("override_reason")
    if not payload.get("consent_overridden") or reason is None:
        return None
    override = safeguards.overrides.get(reason)
    condition = override.conditions.get(event_type) if override else None
    if condition is None:
        return False
    try:
        return bool(condition.matches(datum))
    except ConditionError:
        return False


def _escalations(
    event_type: str, datum: Mapping[str, Any], safeguards: Safeguards
) -> list[frozenset[str]]:
    """The purposes of every escalation the record's values trigger."""
    found = []
    for escalation in safeguards.escalations:
        condition = escalation.conditions.get(event_type)
        if condition is None:
            continue
        try:
            hit = condition.matches(datum)
        except ConditionError:
            hit = True  # a record the check cannot read is treated as sensitive
        if hit:
            found.append(escalation.purposes)
    return found


def field_value(datum: Mapping[str, Any], path: str) -> Any:
    """The value at a dotted path of a decoded record (None where absent)."""
    value: Any = datum
    for name in path.split("."):
        if not isinstance(value, Mapping):
            return None
        value = value.get(name)
    return value


def _printable(value: Any) -> str:
    # A recipient field may hold anything a source typed; only a well-formed id is
    # repeated (it ends up in the audit ledger, which must hold no personal data).
    if isinstance(value, str) and len(value) <= 64 and INSTITUTION_ID.fullmatch(value):
        return value
    return "invalid"
