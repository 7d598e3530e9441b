"""The access policy at run time: publish rights and the per-record decision."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from types import MappingProxyType
from typing import Any

from services.contracts.catalog import SchemaEntry
from services.contracts.ids import INSTITUTION_ID
from services.policy import model
from services.policy.errors import ConditionError
from services.policy.model import AggregateGrant, Decision, Institution, Rule
from services.policy.projection import Projection


class Policy:
    """Institutions, publish rights and disclosure rules, validated (see `load_policy`).

    ``decide`` applies the rules of an event type in file order. For each recipient
    the first rule that matches and passes its consent check delivers; later rules
    for that recipient are skipped, so a recipient gets at most one projection of a
    record (deliveries share the record's ``ce_id``). A rule that matches but fails
    its consent check is reported as withheld and the next rule may still deliver.
    """

    def __init__(
        self,
        version: str,
        institutions: Mapping[str, Institution],
        rules: Sequence[Rule],
        aggregates: Sequence[AggregateGrant] = (),
    ) -> None:
        self.version = version
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
        for rule in self._by_type.get(event_type, ()):
            recipient = rule.recipient
            if recipient is None:
                recipient = _field_value(datum, rule.recipient_field or "")
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
            reason = _consent_check(rule, datum)
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


def _consent_check(rule: Rule, datum: Mapping[str, Any]) -> str | None:
    """None when the rule's consent requirement holds, else the withheld reason."""
    if not rule.consent_scopes:
        return None
    payload = datum["payload"]
    if (
        rule.consent_override
        and payload.get("consent_overridden")
        and payload.get("override_reason") is not None
    ):
        return None
    consent = payload["consent"]
    if not consent.get("obtained"):
        return model.CONSENT_NOT_OBTAINED
    if consent.get("withdrawn_at") is not None:
        return model.CONSENT_WITHDRAWN
    if not set(rule.consent_scopes).issubset(consent.get("scopes") or ()):
        return model.CONSENT_SCOPE_MISSING
    return None


def _field_value(datum: Mapping[str, Any], path: str) -> Any:
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
