"""Loading the policy: read the files, check every name against the catalog, project.

Every check raises `PolicyError` with a message naming the file, the rule and the
field path at fault. Projected schemas are registered in the catalog under stable
names: ``<event_type>.<VIEW>`` for a plain view, ``<event_type>.rule.<rule_id>`` when
a rule grants or removes fields (a plain FULL view uses the event's own schema).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Final

from services.contracts.catalog import Catalog, SchemaEntry
from services.contracts.errors import ContractError, SchemaCatalogError
from services.contracts.ids import EVENT_TYPES, check_institution_id
from services.policy import projection as proj
from services.policy.conditions import Condition, ConditionSyntaxError, compile_condition
from services.policy.errors import PolicyError
from services.policy.files import (
    VERSION_PREFIX,
    AggregateSpec,
    PolicyFiles,
    RuleSpec,
    SafeguardsFile,
    read_policy_files,
)
from services.policy.model import (
    AggregateGrant,
    Escalation,
    Institution,
    Override,
    Rule,
    Safeguards,
)
from services.policy.policy import Policy
from services.policy.projection import Generalisation, Projection, View
from services.policy.tree import SchemaTree

# Symbols that say nothing a reviewer can check.
_VAGUE_PURPOSES: Final = frozenset({"OTHER"})
_VAGUE_BASES: Final = frozenset({"UNKNOWN"})
_CONSENT_PATH: Final = "payload.consent"
_OVERRIDE_PATHS: Final = ("payload.consent_overridden", "payload.override_reason")
_NEVER_GRANTED_BELOW_FULL: Final = frozenset({"HIGHLY_SENSITIVE"})
_DIRECT: Final = "DIRECT_IDENTIFIER"

_TREES: dict[int, SchemaTree] = {}
_PROJECTIONS: dict[tuple[object, ...], Projection] = {}


def load_policy(policy_dir: Path, catalog: Catalog) -> Policy:
    """Read, validate and compile the policy in ``policy_dir``; raises `PolicyError`.

    Projected schemas are added to ``catalog`` so deliveries decode by fingerprint.
    """
    files = read_policy_files(policy_dir)
    return _Loader(files, catalog).policy()


def tree_of(entry: SchemaEntry) -> SchemaTree:
    """The (cached) field tree of a schema version."""
    tree = _TREES.get(entry.fingerprint)
    if tree is None:
        tree = _TREES[entry.fingerprint] = SchemaTree(entry.schema)
    return tree


@dataclass(frozen=True, slots=True)
class _Vocabulary:
    """The enum symbols policy files may use, read from the schemas (vague ones out)."""

    purposes: tuple[str, ...]
    legal_bases: tuple[str, ...]

    @classmethod
    def of(cls, catalog: Catalog) -> _Vocabulary:
        tree = tree_of(catalog.get(EVENT_TYPES[0]))
        purposes = tree.get("envelope.purposes")
        bases = tree.get("envelope.legal_basis")
        if purposes is None or purposes.shape.item is None or bases is None:
            raise PolicyError("the envelope schema lacks purposes or legal_basis")
        return cls(
            tuple(s for s in purposes.shape.item.symbols if s not in _VAGUE_PURPOSES),
            tuple(s for s in bases.shape.symbols if s not in _VAGUE_BASES),
        )


class _Loader:
    def __init__(self, files: PolicyFiles, catalog: Catalog) -> None:
        self.files = files
        self.catalog = catalog
        self.words = _Vocabulary.of(catalog)

    def policy(self) -> Policy:
        institutions = self._institutions()
        rules: list[Rule] = []
        seen: dict[str, str] = {}
        for event_type, rules_file in self.files.rules.items():
            file_name = self.files.rule_files[event_type]
            if event_type not in EVENT_TYPES:
                raise PolicyError(
                    f"{file_name}: unknown event type {event_type!r}; rule files are "
                    f"named after one of {', '.join(EVENT_TYPES)}"
                )
            for spec in rules_file.rule:
                if spec.id in seen:
                    raise PolicyError(
                        f"{file_name}: rule id {spec.id!r} is already used "
                        f"in {seen[spec.id]}"
                    )
                seen[spec.id] = file_name
                rules.append(
                    _RuleLoader(self, institutions, event_type, file_name, spec).rule()
                )
        aggregates = [
            self._aggregate(spec, institutions)
            for spec in self.files.aggregates.aggregate
        ]
        safeguards = self._safeguards(self.files.safeguards, institutions)
        version = _with_tags(self.files.version, self.catalog)
        return Policy(version, institutions, rules, aggregates, safeguards)

    def _safeguards(
        self, spec: SafeguardsFile, institutions: Mapping[str, Institution]
    ) -> Safeguards:
        escalations = []
        for item in spec.escalation:
            where = f"safeguards.toml: escalation {item.id!r}"
            for purpose in item.purposes:
                self.check_symbol(where, "purpose", purpose, self.words.purposes)
            escalations.append(
                Escalation(
                    item.id,
                    frozenset(item.purposes),
                    self._conditions(where, item.when, institutions),
                    item.note,
                )
            )
        overrides = {}
        for override in spec.override:
            where = f"safeguards.toml: override {override.reason!r}"
            self._check_override_reason(where, override.reason)
            overrides[override.reason] = Override(
                override.reason,
                self._conditions(where, override.when, institutions),
                override.note,
            )
        return Safeguards(tuple(escalations), overrides)

    def _conditions(
        self, where: str, when: Mapping[str, str], institutions: Mapping[str, Institution]
    ) -> dict[str, Condition]:
        out = {}
        for event_type, text in when.items():
            if event_type not in EVENT_TYPES:
                raise PolicyError(f"{where}: unknown event type {event_type!r}")
            for entry in self.versions(event_type):
                try:
                    out[event_type] = compile_condition(
                        text, tree_of(entry), frozenset(institutions)
                    )
                except ConditionSyntaxError as e:
                    raise PolicyError(f"{where} ({event_type}): {e}") from e
        return out

    def _check_override_reason(self, where: str, reason: str) -> None:
        for event_type in EVENT_TYPES:
            for entry in self.versions(event_type):
                node = tree_of(entry).get(_OVERRIDE_PATHS[1])
                if node is not None and reason in node.shape.symbols:
                    return
        raise PolicyError(f"{where}: {reason!r} is not a consent override reason")

    def versions(self, event_type: str) -> list[SchemaEntry]:
        try:
            return self.catalog.versions(event_type)
        except ContractError as e:
            raise PolicyError(f"event type {event_type} has no schema: {e}") from e

    def check_symbol(
        self, where: str, key: str, value: str, allowed: tuple[str, ...]
    ) -> None:
        if value not in allowed:
            raise PolicyError(
                f"{where}: {key} {value!r} is not one of {', '.join(allowed)}"
            )

    def _institutions(self) -> dict[str, Institution]:
        spec = self.files.institutions
        groups = spec.working_groups
        out: dict[str, Institution] = {}
        for ident, member in spec.institutions.items():
            where = f"institutions.toml: institution {ident!r}"
            try:
                check_institution_id(ident)
            except ContractError as e:
                raise PolicyError(f"{where}: {e}") from e
            for group in member.working_groups:
                if group not in groups:
                    raise PolicyError(
                        f"{where}: unknown working group {group!r}; "
                        f"known: {', '.join(groups)}"
                    )
            for event_type in member.publishes:
                if event_type not in EVENT_TYPES:
                    raise PolicyError(
                        f"{where}: publishes unknown event type {event_type!r}; "
                        f"known: {', '.join(EVENT_TYPES)}"
                    )
            out[ident] = Institution(
                id=ident,
                name=member.name,
                working_groups=tuple(member.working_groups),
                publishes=frozenset(member.publishes),
                stream=member.stream,
                sensitive=member.sensitive,
                note=member.note,
            )
        if not out:
            raise PolicyError("institutions.toml: names no institution")
        return out

    def _aggregate(
        self, spec: AggregateSpec, institutions: Mapping[str, Institution]
    ) -> AggregateGrant:
        where = f"aggregates.toml: aggregate for {spec.recipient!r}"
        if spec.recipient not in institutions:
            raise PolicyError(f"{where}: unknown institution {spec.recipient!r}")
        for event_type in spec.event_types:
            if event_type not in EVENT_TYPES:
                raise PolicyError(f"{where}: unknown event type {event_type!r}")
            for path in spec.by:
                for entry in self.versions(event_type):
                    if tree_of(entry).get(path) is None:
                        raise PolicyError(
                            f"{where}: {path} is not a field of {event_type} "
                            f"v{entry.version} ({tree_of(entry).suggest(path)})"
                        )
        self.check_symbol(where, "purpose", spec.purpose, self.words.purposes)
        self.check_symbol(where, "legal_basis", spec.legal_basis, self.words.legal_bases)
        return AggregateGrant(
            recipient=spec.recipient,
            event_types=tuple(spec.event_types),
            purpose=spec.purpose,
            legal_basis=spec.legal_basis,
            by=tuple(spec.by),
            note=spec.note,
        )


class _RuleLoader:
    """Checks one rule against the institutions and every version of its schema."""

    def __init__(
        self,
        loader: _Loader,
        institutions: Mapping[str, Institution],
        event_type: str,
        file_name: str,
        spec: RuleSpec,
    ) -> None:
        self.loader = loader
        self.institutions = institutions
        self.event_type = event_type
        self.spec = spec
        self.file_name = file_name
        self.where = f"{file_name}: rule {spec.id!r}"
        self.entries = loader.versions(event_type)

    def fail(self, message: str) -> PolicyError:
        return PolicyError(f"{self.where}: {message}")

    def rule(self) -> Rule:
        spec = self.spec
        view = self._view()
        words = self.loader.words
        self.loader.check_symbol(self.where, "purpose", spec.purpose, words.purposes)
        self.loader.check_symbol(
            self.where, "legal_basis", spec.legal_basis, words.legal_bases
        )
        for scope in spec.consent_scopes:
            self.loader.check_symbol(self.where, "consent scope", scope, words.purposes)
        self._consent()
        recipients = self._recipients()
        for path in (*spec.grant, *spec.remove, *spec.only, *spec.generalise):
            self._path(path)
        self._grants(view)
        generalise = self._generalise()
        condition = None
        for entry in self.entries:
            try:
                condition = (
                    compile_condition(
                        spec.condition, tree_of(entry), frozenset(self.institutions)
                    )
                    if spec.condition is not None
                    else None
                )
            except ConditionSyntaxError as e:
                raise self.fail(str(e)) from e
        return Rule(
            id=spec.id,
            event_type=self.event_type,
            view=view,
            purpose=spec.purpose,
            legal_basis=spec.legal_basis,
            recipient=spec.recipient,
            recipient_field=spec.recipient_field,
            recipients=recipients,
            condition=condition,
            consent_scopes=tuple(spec.consent_scopes),
            consent_override=spec.consent_override,
            grants=tuple(spec.grant),
            removes=tuple(spec.remove),
            only=tuple(spec.only),
            generalise=generalise,
            owner=spec.owner,
            note=spec.note,
            review_by=spec.review_by,
            source_file=self.file_name,
            projections={
                e.version: self._projection(e, view, generalise) for e in self.entries
            },
        )

    def _generalise(self) -> tuple[Generalisation, ...]:
        out = []
        for path, spec in sorted(self.spec.generalise.items()):
            for entry in self.entries:
                node = tree_of(entry).nodes[path]
                symbols = node.shape.symbols if node.shape.kind == "enum" else ()
                if not symbols:
                    raise self.fail(f"generalise {path}: only enum fields generalise")
                for symbol in (*spec.keep, spec.otherwise):
                    if symbol not in symbols:
                        raise self.fail(
                            f"generalise {path}: {symbol!r} is not one of "
                            f"{', '.join(symbols)}"
                        )
            out.append(Generalisation(path, frozenset(spec.keep), spec.otherwise))
        return tuple(out)

    def _view(self) -> View:
        if self.spec.view not in proj.VIEWS:
            raise self.fail(
                f"view {self.spec.view!r} is not one of {', '.join(proj.VIEWS)}"
            )
        return self.spec.view

    def _consent(self) -> None:
        spec = self.spec
        if spec.legal_basis == "CONSENT" and not spec.consent_scopes:
            raise self.fail(
                "legal_basis CONSENT needs consent_scopes naming what was consented"
            )
        if spec.consent_override and not spec.consent_scopes:
            raise self.fail("consent_override without consent_scopes overrides nothing")
        needed = [_CONSENT_PATH] if spec.consent_scopes else []
        if spec.consent_override:
            needed.extend(_OVERRIDE_PATHS)
        for path in needed:
            for entry in self.entries:
                if tree_of(entry).get(path) is None:
                    raise self.fail(
                        f"{self.event_type} v{entry.version} has no {path}, "
                        "so this rule cannot check consent"
                    )

    def _recipients(self) -> frozenset[str]:
        spec = self.spec
        if (spec.recipient is None) == (spec.recipient_field is None):
            raise self.fail("name exactly one of recipient or recipient_field")
        if spec.recipient is not None:
            if spec.recipients is not None:
                raise self.fail(
                    "recipients (an allow-list) goes with recipient_field only"
                )
            self._institution(spec.recipient)
            if not self.institutions[spec.recipient].stream:
                raise self.fail(
                    f"{spec.recipient} gets no stream; it can only be reached through a "
                    "record that names it (recipient_field) with the person's consent"
                )
            return frozenset({spec.recipient})
        field = spec.recipient_field or ""
        for entry in self.entries:
            node = tree_of(entry).get(field)
            if node is None:
                raise self.fail(
                    f"recipient_field {field} is not a field of {self.event_type} "
                    f"v{entry.version} ({tree_of(entry).suggest(field)})"
                )
            if node.shape.kind != "scalar" or node.shape.primitive != "string":
                raise self.fail(
                    f"recipient_field {field} is a {node.shape.describe}, not a string"
                )
        if spec.recipients is None:
            return frozenset(i.id for i in self.institutions.values() if i.stream)
        for ident in spec.recipients:
            self._institution(ident)
            if not self.institutions[ident].stream and (
                not spec.consent_scopes or spec.consent_override
            ):
                raise self.fail(
                    f"{ident} gets no stream; a rule reaching it must require consent "
                    "(consent_scopes) and must not allow consent_override"
                )
        return frozenset(spec.recipients)

    def _institution(self, ident: str) -> None:
        if ident not in self.institutions:
            raise self.fail(f"unknown institution {ident!r} (not in institutions.toml)")

    def _path(self, path: str) -> None:
        for entry in self.entries:
            tree = tree_of(entry)
            if tree.get(path) is None:
                raise self.fail(
                    f"{path} is not a field of {self.event_type} v{entry.version} "
                    f"({tree.suggest(path)})"
                )

    def _grants(self, view: View) -> None:
        if view == "FULL":
            if self.spec.grant:
                raise self.fail("a FULL view already holds every field; grant nothing")
            return
        for grant in self.spec.grant:
            for entry in self.entries:
                tree = tree_of(entry)
                for path in tree.subtree(grant):
                    tag = tree.nodes[path].sensitivity
                    if tag in _NEVER_GRANTED_BELOW_FULL:
                        raise self.fail(
                            f"grant {grant} would disclose {path} ({tag}) in view "
                            f"{view}; highly sensitive fields go only in FULL views"
                        )
                    if (
                        tag == _DIRECT
                        and view in proj.REKEYED_VIEWS
                        and not self.spec.consent_scopes
                    ):
                        raise self.fail(
                            f"grant {grant} adds direct identifier {path} to "
                            f"pseudonymous view {view}; that needs the person's "
                            "consent (consent_scopes)"
                        )

    def _projection(
        self, entry: SchemaEntry, view: View, generalise: tuple[Generalisation, ...]
    ) -> Projection:
        spec = self.spec
        grants, removes, only = tuple(spec.grant), tuple(spec.remove), tuple(spec.only)
        extras = bool(grants or removes or only)
        name = (
            f"{self.event_type}.rule.{spec.id}" if extras else f"{self.event_type}.{view}"
        )
        masked = frozenset(i.id for i in self.institutions.values() if i.sensitive)
        key = (entry.fingerprint, name, view, grants, removes, only, generalise, masked)
        projection = _PROJECTIONS.get(key)
        if projection is None:
            try:
                projection = proj.build(
                    entry,
                    tree_of(entry),
                    name,
                    view,
                    grants=grants,
                    removes=removes,
                    only=only,
                    generalise=generalise,
                    masked=masked,
                )
            except (PolicyError, SchemaCatalogError) as e:
                raise self.fail(str(e)) from e
            _PROJECTIONS[key] = projection
        if projection.entry is not entry:
            try:
                self.loader.catalog.add(projection.entry)
            except SchemaCatalogError as e:
                raise self.fail(f"projected schema {name}: {e}") from e
        return projection


def _with_tags(files_version: str, catalog: Catalog) -> str:
    """The policy version over the policy files and every event field's tags.

    A sensitivity tag decides what a view keeps, so changing one is a policy change
    and must give a new version even though the schema's fingerprint stays.
    """
    digest = hashlib.sha256(files_version.encode())
    for event_type in EVENT_TYPES:
        for entry in catalog.versions(event_type):
            tags = [
                (path, node.sensitivity, node.linkable)
                for path, node in sorted(tree_of(entry).nodes.items())
            ]
            digest.update(json.dumps([event_type, entry.version, tags]).encode())
    return VERSION_PREFIX + digest.hexdigest()[:16]
