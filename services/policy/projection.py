"""Projection of a record to a view: kept paths, projected schema, compiled builder.

Views (docs/sensitivity.md) keep fields by their ``sensitivity`` tag; a field is
kept iff its own tag is allowed and its parent is kept. A rule may grant extra paths
(the whole subtree, plus its ancestors as containers) or remove paths (removal wins).
``PSEUDO`` also drops exact age and district, cuts timestamps to the day, and masks
institutions whose mere involvement reveals a protection need (and, for referrals,
who serves a specialised-protection referral). ``PSEUDO_S`` cuts timestamps to the
hour. Both re-keyed views replace every *linkable* identifier (event, record and
case ids: the ``linkable`` schema attribute) by the recipient's own UUID for it, so
no two pseudonymous recipients share a value to join their datasets on.

The projected schema keeps every record's full name, so a reader holding it can also
resolve full writer data (Avro schema resolution); fields projected away vanish,
optional fields stay optional, and generalised values keep their type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal
from uuid import UUID

from services.contracts.catalog import SchemaEntry, make_entry
from services.contracts.schema_json import PRIMITIVES, Schema, full_name, index_named
from services.policy.errors import PolicyError
from services.policy.tree import SchemaTree, Shape

View = Literal["FULL", "IDENT", "PSEUDO_S", "PSEUDO"]
VIEWS: Final[tuple[View, ...]] = ("FULL", "IDENT", "PSEUDO_S", "PSEUDO")
VIEW_TAGS: Final[Mapping[str, frozenset[str]]] = {
    "FULL": frozenset(
        {
            "INTERNAL",
            "QUASI_IDENTIFIER",
            "DIRECT_IDENTIFIER",
            "SENSITIVE",
            "HIGHLY_SENSITIVE",
        }
    ),
    "IDENT": frozenset({"INTERNAL", "QUASI_IDENTIFIER", "DIRECT_IDENTIFIER"}),
    "PSEUDO_S": frozenset({"INTERNAL", "QUASI_IDENTIFIER", "SENSITIVE"}),
    "PSEUDO": frozenset({"INTERNAL", "QUASI_IDENTIFIER"}),
}
REKEYED_VIEWS: Final = frozenset({"PSEUDO_S", "PSEUDO"})
# PSEUDO drops exact age and the 262-unit district on top of the tags
# (docs/sensitivity.md).
PSEUDO_DROPPED_FIELDS: Final = frozenset({"age_years", "district_code"})
# The hub derives service_group from service_category (docs/sensitivity.md, referral);
# every protection-related category collapses into SPECIALISED_PROTECTION.
SERVICE_GROUPS: Final[Mapping[str, str]] = {
    "HEALTH_MEDICAL": "HEALTH",
    "MENTAL_HEALTH_PSYCHOSOCIAL": "HEALTH",
    "EMPLOYMENT_LIVELIHOODS": "LIVELIHOODS",
    "EDUCATION": "EDUCATION",
    "LEGAL_AID": "LEGAL_AND_DOCUMENTATION",
    "IDENTITY_DOCUMENTATION": "LEGAL_AND_DOCUMENTATION",
    "SHELTER_ACCOMMODATION": "BASIC_NEEDS_AND_SHELTER",
    "BASIC_NEEDS_CASH_FOOD": "BASIC_NEEDS_AND_SHELTER",
    "CHILD_PROTECTION": "SPECIALISED_PROTECTION",
    "GBV_SPECIALISED": "SPECIALISED_PROTECTION",
    "TRAFFICKING_VICTIM_ASSISTANCE": "SPECIALISED_PROTECTION",
    "VICTIM_ASSISTANCE_GENERAL": "SPECIALISED_PROTECTION",
    "FAMILY_TRACING_REUNIFICATION": "SPECIALISED_PROTECTION",
    "OTHER": "OTHER",
}
MASKED_INSTITUTION: Final = "masked"
_SPECIALISED: Final = "SPECIALISED_PROTECTION"
# Fields that name an institution; PSEUDO masks the ones that reveal a protection need.
INSTITUTION_FIELDS: Final = (
    "envelope.source_institution_id",
    "payload.referring_institution_id",
    "payload.receiving_institution_id",
)
_SOURCE: Final = "envelope.source_institution_id"
_RECEIVING: Final = "payload.receiving_institution_id"
_HOUR_MS: Final = 3_600_000

Fn = Callable[[Any], Any]
Ids = Callable[[str], str]
Apply = Callable[[Mapping[str, Any], "str | None", "Ids | None"], dict[str, Any]]


@dataclass(frozen=True, slots=True)
class Generalisation:
    """An enum field's values coarsened: symbols outside ``keep`` become ``otherwise``.

    Removing a field only for some values tells the recipient those values by the
    field's absence; replacing every other value by one symbol does not.
    """

    path: str
    keep: frozenset[str]
    otherwise: str


@dataclass(frozen=True, slots=True)
class Projection:
    """One view (plus a rule's extras) of one schema version.

    ``apply`` is on the router's hot path: it runs a function compiled once, shares
    unchanged sub-records with the input (treat both as read-only) and copies only
    what it changes.
    """

    name: str
    view: View
    source: SchemaEntry = field(repr=False)
    entry: SchemaEntry = field(repr=False)
    field_paths: tuple[str, ...]
    grants: tuple[str, ...]
    removes: tuple[str, ...]
    _apply: Apply = field(repr=False, compare=False)
    # Whether ``apply`` hands the source's payload through untouched and the
    # projected schema writes it as the source does: its bytes can be reused.
    payload_verbatim: bool = False
    # Projections of one source with equal keys build equal payloads (and schemas
    # for them), so one encoding serves every delivery of an event among them.
    payload_key: tuple[Any, ...] = ()

    def apply(
        self,
        datum: Mapping[str, Any],
        subject_key: str | None,
        ids: Ids | None = None,
    ) -> dict[str, Any]:
        """The projected datum, ready for ``codec.encode(self.entry, ...)``.

        ``subject_key`` replaces ``envelope.subject_key``: the hub key for FULL and
        IDENT, the recipient's re-keyed one for PSEUDO_S and PSEUDO. ``ids`` maps an
        identifier to the recipient's own one; re-keyed views need it.
        """
        return self._apply(datum, subject_key, ids)


def kept_paths(
    tree: SchemaTree,
    view: View,
    grants: Iterable[str] = (),
    removes: Iterable[str] = (),
    only: Iterable[str] = (),
) -> frozenset[str]:
    """Every field path a view keeps, after a rule's grants, removals and allow-list.

    ``only`` (when given) keeps, of the payload, just the named subtrees (and their
    ancestors as containers); the envelope stays as the view has it.
    """
    allowed = VIEW_TAGS[view]
    kept: set[str] = set()

    def visit(parent: str) -> None:
        for node in tree.children(parent):
            if node.sensitivity in allowed and not _generalised_away(view, node.name):
                kept.add(node.path)
                visit(node.path)

    visit("")
    for grant in grants:
        kept.update(tree.ancestors(grant))
        for path in tree.subtree(grant):
            # A grant of a record does not bring back what the view generalises away
            # (exact age, district); only naming that field itself does.
            if path == grant or not _generalised_away(view, path.rpartition(".")[2]):
                kept.add(path)
    for remove in removes:
        kept.difference_update(tree.subtree(remove))
    allowed_paths = [
        p for path in only for p in (*tree.ancestors(path), *tree.subtree(path))
    ]
    if allowed_paths:
        payload = {p for p in kept if p == "payload" or p.startswith("payload.")}
        kept.difference_update(payload - {"payload", *allowed_paths})
    return frozenset(kept)


def leaf_paths(tree: SchemaTree, kept: frozenset[str]) -> tuple[str, ...]:
    """The kept paths that hold values: non-records, and records with nothing kept."""
    leaves = []
    for path in sorted(kept):
        node = tree.nodes[path]
        if node.record is None or not any(c.path in kept for c in node.record.fields):
            leaves.append(path)
    return tuple(leaves)


def build(
    source: SchemaEntry,
    tree: SchemaTree,
    name: str,
    view: View,
    *,
    grants: tuple[str, ...] = (),
    removes: tuple[str, ...] = (),
    only: tuple[str, ...] = (),
    generalise: tuple[Generalisation, ...] = (),
    masked: frozenset[str] = frozenset(),
) -> Projection:
    """Derive the projection ``name`` of ``source`` (deterministic for equal inputs).

    ``masked`` names the institutions a PSEUDO view shows as ``masked``.
    """
    kept = kept_paths(tree, view, grants, removes, only)
    if view == "FULL" and kept == frozenset(tree.nodes):
        entry = source  # nothing dropped: deliveries use the event's own schema
    else:
        entry = make_entry(name, source.version, project_schema(source.schema, kept))
    payload = frozenset(tree.subtree("payload"))
    rewrites = _Rewrites.of(tree, kept, view, generalise, masked)
    return Projection(
        name=name,
        view=view,
        source=source,
        entry=entry,
        field_paths=leaf_paths(tree, kept),
        grants=grants,
        removes=removes,
        _apply=compile_apply(tree, kept, view, rewrites),
        payload_verbatim=bool(payload)
        and payload <= kept
        and view in ("FULL", "IDENT")
        and not rewrites.touches_payload,
        # Re-keyed payloads differ per recipient: never shared between deliveries.
        payload_key=(source.fingerprint, CUT_MS.get(view), kept & payload, rewrites.key)
        if not rewrites.linkable_payload
        else (),
    )


def project_schema(schema: Schema, kept: frozenset[str]) -> Schema:
    """The schema JSON with every field whose path is not in ``kept`` removed."""
    return _Emitter(index_named([schema]), kept).record(schema, "", None)


class _Emitter:
    """Rebuilds a self-contained schema; named types are defined at first kept use."""

    def __init__(self, named: Mapping[str, Schema], kept: frozenset[str]) -> None:
        self.named = named
        self.kept = kept
        self.emitted: dict[str, tuple[str, frozenset[str]]] = {}

    def emit(self, schema: Schema, path: str, namespace: str | None) -> Schema:
        if isinstance(schema, str):
            if schema in PRIMITIVES:
                return schema
            name = full_name(schema, namespace)
            return self.emit(self.named[name], path, namespace)
        if isinstance(schema, list):
            return [self.emit(branch, path, namespace) for branch in schema]
        kind = schema["type"]
        if kind in ("record", "error"):
            return self.record(schema, path, namespace)
        if kind in ("enum", "fixed"):
            name = full_name(schema["name"], schema.get("namespace", namespace))
            if name in self.emitted:
                return name
            self.emitted[name] = (path, frozenset())
            return dict(schema)
        if kind == "array":
            return {**schema, "items": self.emit(schema["items"], path, namespace)}
        if kind == "map":
            return {**schema, "values": self.emit(schema["values"], path, namespace)}
        if isinstance(kind, str) and kind in PRIMITIVES:
            return dict(schema)
        return self.emit(kind, path, namespace)

    def record(
        self, schema: Mapping[str, Any], path: str, namespace: str | None
    ) -> Schema:
        name = full_name(schema["name"], schema.get("namespace", namespace))
        prefix = f"{path}." if path else ""
        shape = frozenset(p[len(prefix) :] for p in self.kept if p.startswith(prefix))
        if name in self.emitted:
            first, first_shape = self.emitted[name]
            if first_shape != shape:
                raise PolicyError(
                    f"record type {name} would be projected differently at "
                    f"{first or '<root>'} and at {path or '<root>'}; grant or remove "
                    "the same fields at every place it is used"
                )
            return name
        self.emitted[name] = (path, shape)
        own_ns = name.rpartition(".")[0] or None
        fields = []
        for spec in schema["fields"]:
            child = prefix + spec["name"]
            if child in self.kept:
                fields.append({**spec, "type": self.emit(spec["type"], child, own_ns)})
        extra = {
            k: v
            for k, v in schema.items()
            if k not in ("type", "name", "namespace", "fields")
        }
        head = {"type": "record", "name": name.rpartition(".")[2]}
        if own_ns:
            head["namespace"] = own_ns
        return {**head, **extra, "fields": fields}


def _generalised_away(view: str, name: str) -> bool:
    return view == "PSEUDO" and name in PSEUDO_DROPPED_FIELDS


_DAY_MS: Final = 86_400_000
# How finely each view keeps timestamps (milliseconds; absent: exact). Exact times
# shared by every recipient of an event are a join key as good as an id.
CUT_MS: Final[Mapping[str, int]] = {"PSEUDO": _DAY_MS, "PSEUDO_S": _HOUR_MS}


def cut_time(value: datetime | int, unit_ms: int) -> datetime | int:
    """``value`` cut down to a multiple of ``unit_ms`` (a day or an hour)."""
    # The router works on plain datums (epoch milliseconds); tools on datetimes.
    if isinstance(value, int):
        return value - value % unit_ms
    if unit_ms == _DAY_MS:
        return value.replace(hour=0, minute=0, second=0, microsecond=0)
    return value.replace(minute=0, second=0, microsecond=0)


def _optional(fn: Fn) -> Fn:
    return lambda v: None if v is None else fn(v)


class _Compiler:
    """Compiles the projection of a datum into nested comprehension closures."""

    def __init__(
        self,
        kept: frozenset[str],
        view: View,
        copied: frozenset[str],
        generalise: Mapping[str, Generalisation],
    ) -> None:
        self.kept = kept
        self.cut_ms = CUT_MS.get(view)
        self.copied = copied
        self.generalise = generalise

    def record(self, shape: Shape, path: str) -> Fn | None:
        parts: list[tuple[str, Fn | None]] = []
        for node in shape.fields:
            if node.path in self.kept:
                fn = self.shape(node.shape, node.path)
                parts.append((node.name, _optional(fn) if fn and node.nullable else fn))
        if (
            len(parts) == len(shape.fields)
            and all(fn is None for _, fn in parts)
            and path not in self.copied
        ):
            return None  # kept whole and unchanged: share it
        plain = tuple(name for name, fn in parts if fn is None)
        mapped = tuple((name, fn) for name, fn in parts if fn is not None)
        if not mapped:
            return lambda d: {k: d[k] for k in plain}
        return lambda d: {**{k: d[k] for k in plain}, **{k: fn(d[k]) for k, fn in mapped}}

    def shape(self, shape: Shape, path: str) -> Fn | None:
        if shape.kind == "record":
            return self.record(shape, path)
        if shape.kind in ("array", "map") and shape.item is not None:
            inner = self.shape(shape.item, path)
            if inner is None:
                return None
            if shape.kind == "array":
                return lambda v: [inner(x) for x in v]
            return lambda v: {k: inner(x) for k, x in v.items()}
        rule = self.generalise.get(path)
        if rule is not None and shape.kind == "enum":
            keep, otherwise = rule.keep, rule.otherwise
            return lambda v: v if v in keep else otherwise
        unit = self.cut_ms
        if unit is not None and shape.logical == "timestamp-millis":
            return lambda v: cut_time(v, unit)
        return None


def compile_apply(
    tree: SchemaTree, kept: frozenset[str], view: View, rewrites: _Rewrites | None = None
) -> Apply:
    """The function building the projected datum (see `Projection.apply`)."""
    rewrites = rewrites or _Rewrites.of(tree, kept, view)
    copied = frozenset({"", "envelope", *rewrites.copied})
    root = _Compiler(kept, view, copied, rewrites.generalised).record(tree.root, "")
    if root is None:  # unreachable: the root is always copied
        raise PolicyError("internal error: projection root was not compiled")
    keyed = "envelope.subject_key" in kept
    linkable = rewrites.linkable
    fixup = rewrites.fixup

    def apply(
        datum: Mapping[str, Any], subject_key: str | None, ids: Ids | None
    ) -> dict[str, Any]:
        out: dict[str, Any] = root(datum)
        if keyed:
            out["envelope"]["subject_key"] = subject_key
        if linkable:
            if ids is None:
                raise PolicyError(
                    "internal error: a re-keyed view was applied without recipient ids"
                )
            for steps in linkable:
                _replace(out, steps, ids)
        if fixup is not None:
            fixup(datum, out)
        return out

    return apply


def _replace(value: Any, steps: tuple[str, ...], ids: Ids) -> None:
    """Map the identifier at ``steps`` (through lists) with ``ids``, in place."""
    if isinstance(value, list):
        for item in value:
            _replace(item, steps, ids)
        return
    if not isinstance(value, dict):
        return  # an absent optional record
    name = steps[0]
    if len(steps) == 1:
        found = value.get(name)
        if isinstance(found, str):
            value[name] = ids(found)
        elif isinstance(found, UUID):  # a decoded (natural) datum, not a plain one
            value[name] = UUID(ids(str(found)))
        return
    _replace(value.get(name), steps[1:], ids)


@dataclass(frozen=True, slots=True)
class _Rewrites:
    """What a view changes in values (not in shape): ids, coarsened enums, masks."""

    linkable: tuple[tuple[str, ...], ...] = ()
    generalised: Mapping[str, Generalisation] = field(default_factory=dict)
    fixup: _InstitutionMask | None = None
    copied: frozenset[str] = frozenset()
    key: tuple[Any, ...] = ()

    @classmethod
    def of(
        cls,
        tree: SchemaTree,
        kept: frozenset[str],
        view: View,
        generalise: tuple[Generalisation, ...] = (),
        masked: frozenset[str] = frozenset(),
    ) -> _Rewrites:
        linkable: tuple[str, ...] = ()
        if view in REKEYED_VIEWS:
            linkable = tuple(sorted(p for p in kept if tree.nodes[p].linkable))
        generalised = {g.path: g for g in generalise if g.path in kept}
        fixup = _InstitutionMask.of(tree, kept, view, masked)
        copied: set[str] = set()
        for path in linkable:
            copied.update(tree.ancestors(path))
        if fixup is not None:
            copied.update({"envelope", "payload"})
        key = (
            tuple(
                sorted(
                    (g.path, tuple(sorted(g.keep)), g.otherwise)
                    for g in generalised.values()
                )
            ),
            fixup,
        )
        return cls(
            tuple(tuple(p.split(".")) for p in linkable),
            generalised,
            fixup,
            frozenset(copied),
            key,
        )

    @property
    def linkable_payload(self) -> bool:
        """Whether the payload holds per-recipient ids (bytes differ per recipient)."""
        return any(steps[0] == "payload" for steps in self.linkable)

    @property
    def touches_payload(self) -> bool:
        """Whether the payload differs from the source's own."""
        return (
            self.linkable_payload
            or bool(self.generalised)
            or (self.fixup is not None and self.fixup.touches_payload)
        )


@dataclass(frozen=True, slots=True)
class _InstitutionMask:
    """Derives ``service_group``; in PSEUDO, hides institutions that reveal a need.

    A referral *to ISDEMU* reveals gender-based violence (docs/sensitivity.md): PSEUDO
    shows ``masked`` for institutions flagged sensitive wherever they appear, and
    for whoever serves a specialised-protection referral (and publishes about it).
    """

    group: bool
    fields: tuple[str, ...]
    masked: frozenset[str]
    referral: bool

    @classmethod
    def of(
        cls, tree: SchemaTree, kept: frozenset[str], view: View, masked: frozenset[str]
    ) -> _InstitutionMask | None:
        referral = tree.get("payload.service_category") is not None
        group = referral and "payload.service_group" in kept
        fields: tuple[str, ...] = ()
        if view == "PSEUDO":
            fields = tuple(p for p in INSTITUTION_FIELDS if p in kept)
        if not (group or fields):
            return None
        return cls(group, fields, masked if fields else frozenset(), referral)

    @property
    def touches_payload(self) -> bool:
        """Whether the payload is rewritten (else only the envelope)."""
        return self.group or any(p.startswith("payload.") for p in self.fields)

    def __call__(self, datum: Mapping[str, Any], out: dict[str, Any]) -> None:
        hidden = set(self.masked)
        if self.referral:
            group = SERVICE_GROUPS.get(datum["payload"]["service_category"], "OTHER")
            if self.group:
                out["payload"]["service_group"] = group
            if group == _SPECIALISED:
                hidden.add(datum["payload"]["receiving_institution_id"])
        for path in self.fields:
            section, _, name = path.partition(".")
            if out[section][name] in hidden:
                out[section][name] = MASKED_INSTITUTION
