"""Projection of a record to a view: kept paths, projected schema, compiled builder.

Views (DESIGN §4, domain.md §4.5) keep fields by their ``sensitivity`` tag; a field is
kept iff its own tag is allowed and its parent is kept. A rule may grant extra paths
(the whole subtree, plus its ancestors as containers) or remove paths (removal wins).
``PSEUDO`` also drops exact age and district, cuts timestamps to the day, and for
referrals masks the receiving institution of specialised-protection referrals.

The projected schema keeps every record's full name, so a reader holding it can also
resolve full writer data (Avro schema resolution); fields projected away vanish,
optional fields stay optional, and generalised values keep their type.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any, Final, Literal

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
# domain.md §4.5: PSEUDO drops exact age and the 262-unit district on top of the tags.
PSEUDO_DROPPED_FIELDS: Final = frozenset({"age_years", "district_code"})
# The hub derives service_group from service_category (domain.md §4.5, referral row);
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

Fn = Callable[[Any], Any]
Apply = Callable[[Mapping[str, Any], "str | None"], dict[str, Any]]


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

    def apply(self, datum: Mapping[str, Any], subject_key: str | None) -> dict[str, Any]:
        """The projected datum, ready for ``codec.encode(self.entry, ...)``.

        ``subject_key`` replaces ``envelope.subject_key``: the hub key for FULL and
        IDENT, the recipient's re-keyed one for PSEUDO_S and PSEUDO.
        """
        return self._apply(datum, subject_key)


def kept_paths(
    tree: SchemaTree, view: View, grants: Iterable[str] = (), removes: Iterable[str] = ()
) -> frozenset[str]:
    """Every field path a view keeps, after a rule's grants and removals."""
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
) -> Projection:
    """Derive the projection ``name`` of ``source`` (deterministic for equal inputs)."""
    kept = kept_paths(tree, view, grants, removes)
    if view == "FULL" and kept == frozenset(tree.nodes):
        entry = source  # nothing dropped: deliveries use the event's own schema
    else:
        entry = make_entry(name, source.version, project_schema(source.schema, kept))
    payload = frozenset(tree.subtree("payload"))
    return Projection(
        name=name,
        view=view,
        source=source,
        entry=entry,
        field_paths=leaf_paths(tree, kept),
        grants=grants,
        removes=removes,
        _apply=compile_apply(tree, kept, view),
        payload_verbatim=bool(payload)
        and payload <= kept
        and view != "PSEUDO"
        and _ReferralFixup.of(tree, kept, view) is None,
        payload_key=(source.fingerprint, view == "PSEUDO", kept & payload),
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


def _day(value: datetime | int) -> datetime | int:
    # The router works on plain datums (epoch milliseconds); tools on datetimes.
    if isinstance(value, int):
        return value - value % _DAY_MS
    return value.replace(hour=0, minute=0, second=0, microsecond=0)


def _optional(fn: Fn) -> Fn:
    return lambda v: None if v is None else fn(v)


class _Compiler:
    """Compiles the projection of a datum into nested comprehension closures."""

    def __init__(self, kept: frozenset[str], view: View, copied: frozenset[str]) -> None:
        self.kept = kept
        self.cut_times = view == "PSEUDO"
        self.copied = copied

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
        if self.cut_times and shape.logical == "timestamp-millis":
            return _day
        return None


def compile_apply(tree: SchemaTree, kept: frozenset[str], view: View) -> Apply:
    """The function building the projected datum (see `Projection.apply`)."""
    referral = _ReferralFixup.of(tree, kept, view)
    copied = frozenset({"", "envelope", *(("payload",) if referral else ())})
    root = _Compiler(kept, view, copied).record(tree.root, "")
    if root is None:  # unreachable: the root is always copied
        raise PolicyError("internal error: projection root was not compiled")
    keyed = "envelope.subject_key" in kept

    def apply(datum: Mapping[str, Any], subject_key: str | None) -> dict[str, Any]:
        out: dict[str, Any] = root(datum)
        if keyed:
            out["envelope"]["subject_key"] = subject_key
        if referral is not None:
            referral(datum, out)
        return out

    return apply


@dataclass(frozen=True, slots=True)
class _ReferralFixup:
    """Derives ``service_group`` and, in PSEUDO, masks who serves protection cases."""

    group: bool
    mask_institution: bool
    mask_unit: bool

    @classmethod
    def of(
        cls, tree: SchemaTree, kept: frozenset[str], view: View
    ) -> _ReferralFixup | None:
        if tree.get("payload.service_category") is None:
            return None
        group = "payload.service_group" in kept
        pseudo = view == "PSEUDO"
        institution = pseudo and "payload.receiving_institution_id" in kept
        unit = pseudo and "payload.receiving_unit_id" in kept
        if not (group or institution or unit):
            return None
        return cls(group, institution, unit)

    def __call__(self, datum: Mapping[str, Any], out: dict[str, Any]) -> None:
        group = SERVICE_GROUPS.get(datum["payload"]["service_category"], "OTHER")
        payload = out["payload"]
        if self.group:
            payload["service_group"] = group
        if group == _SPECIALISED:
            # A referral *to ISDEMU* reveals GBV (domain.md §4.5): hide who serves it.
            if self.mask_institution:
                payload["receiving_institution_id"] = MASKED_INSTITUTION
            if self.mask_unit:
                payload["receiving_unit_id"] = None
