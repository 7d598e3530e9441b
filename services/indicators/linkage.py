"""Linked tables: two indicators of one event type must not give each other away.

Suppression protects each indicator's lattice on its own. Two indicators of the
same event type whose populations overlap are tied by more equations than their
own margins when the events one counts can be picked out through the other's
breakdowns (a "children returned" indicator beside "returns by age group"): a cell
one hides is then published by the other, or follows from its cells.

The pair is safe when one of them, A, has in every cell of its lattice events the
other, B, leaves out, free to take any count: a linear relation between the two
indicators' published cells then cannot involve A's cells at all (those free
counts appear in A's cells only), so it is one of B's own margin equations, which
B's suppression already covers. The loader takes A's cells to hold such events
when B's filter has a top-level conjunct (``&&``) that reads only fields A neither
breaks down by nor filters on: changing those fields turns an event of A into one
B leaves out without moving it to another cell of A. A dimension reads its field,
the fields it ``determines`` (declared in the catalogue: ``age_group`` gives away
``is_minor``) and, for a derived one, the fields its value is worked out from;
what a dimension determines is given away by a filter reading its field too.

The pair is also safe when the two filters are provably disjoint: the top-level
conjuncts of both that compare one field with scalar literals (``f == 'a'``,
``f == 'a' || f == 'b'``, ``f != 'a'``, ``f``, ``!(f)``) leave it no value.
Anything the analysis does not understand (projections, functions) counts as
reading every field of its filter, which can only refuse more. The analysis
assumes a conjunct can be false in every cell of the other indicator (a returned
child can be with a parent as well as unaccompanied); a condition that holds for
every record is not detected.
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Final

import jmespath

from services.indicators.errors import CatalogueError

if TYPE_CHECKING:
    from services.indicators.catalogue import Dimension, Indicator

# The file the loader reads (catalogue.CATALOGUE_FILE; that module imports this one).
_FILE: Final = "indicators.toml"
# What a derived dimension's value is worked out from, beyond its own field.
DERIVED_READS: Final[Mapping[str, frozenset[str]]] = {
    "time_to_acknowledgement": frozenset({"payload.referral_id", "envelope.occurred_at"}),
}
_Key = tuple[str, Any]


@dataclass(frozen=True, slots=True)
class _Constraint:
    """What one top-level conjunct says about one field.

    ``kind`` is ``in`` (the field equals one of ``values``), ``not_in`` (it
    equals none of them), ``truthy`` or ``falsy``.
    """

    path: str
    kind: str
    values: frozenset[_Key] = frozenset()


def dimension_reads(dimension: Dimension, event_type: str) -> frozenset[str]:
    """The fields ``dimension``'s value for ``event_type`` depends on or gives away."""
    out = {dimension.fields[event_type], *dimension.determines.get(event_type, ())}
    if dimension.derived is not None:
        out |= DERIVED_READS.get(dimension.derived, frozenset())
    return frozenset(out)


def breakdown_reads(indicator: Indicator) -> dict[str, str]:
    """Every field the indicator's breakdowns read, with the dimension reading it."""
    out: dict[str, str] = {}
    for dim in indicator.dimensions:
        for path in sorted(dimension_reads(dim, indicator.event_type)):
            out.setdefault(path, dim.id)
    return out


def check_links(
    indicators: Sequence[Indicator], dimensions: Iterable[Dimension] = ()
) -> None:
    """Refuse any pair of indicators that could give away each other's hidden cells.

    ``dimensions`` are every dimension of the catalogue: what one `determines`
    holds for a filter reading its field too.
    """
    known = list(dimensions)
    for a, b in itertools.combinations(indicators, 2):
        if a.event_type == b.event_type and linked(a, b, known):
            raise CatalogueError(_message(a, b, known))


def linked(a: Indicator, b: Indicator, dimensions: Sequence[Dimension] = ()) -> bool:
    """Whether the pair's published cells may be tied by more than their margins."""
    if a.filter_text is None and b.filter_text is None:
        return True
    if _disjoint(a, b):
        return False
    return not (
        _leaves_out_freely(a, b, dimensions) or _leaves_out_freely(b, a, dimensions)
    )


def _leaves_out_freely(
    a: Indicator, b: Indicator, dimensions: Sequence[Dimension]
) -> bool:
    """Whether every cell of ``a`` can hold events ``b``'s filter leaves out."""
    if b.filter_text is None:
        return False
    taken = _taken(a, dimensions)
    return any(not _overlaps(paths, taken) for paths in _conjunct_fields(b))


def _taken(indicator: Indicator, dimensions: Sequence[Dimension]) -> set[str]:
    """The fields the indicator's cells fix: breakdowns, filter, what they determine."""
    out = set(breakdown_reads(indicator)) | _filter_fields(indicator)
    event_type = indicator.event_type
    grown = True
    while grown:
        grown = False
        for dim in [*indicator.dimensions, *dimensions]:
            if dim.fields.get(event_type) in out:
                more = set(dim.determines.get(event_type, ())) - out
                out |= more
                grown = grown or bool(more)
    return out


def _overlaps(paths: Iterable[str], others: Iterable[str]) -> bool:
    # A record field read whole overlaps the fields inside it, and the reverse.
    others = list(others)
    return any(
        p == q or p.startswith(q + ".") or q.startswith(p + ".")
        for p in paths
        for q in others
    )


def _filter_fields(indicator: Indicator) -> set[str]:
    return set(indicator.filter.fields) if indicator.filter is not None else set()


def _conjuncts(indicator: Indicator) -> list[Mapping[str, Any]]:
    if indicator.filter_text is None:
        return []
    return _split(jmespath.compile(indicator.filter_text).parsed, "and_expression")


def _split(node: Mapping[str, Any], kind: str) -> list[Mapping[str, Any]]:
    if node["type"] != kind:
        return [node]
    return [part for child in node["children"] for part in _split(child, kind)]


def _conjunct_fields(indicator: Indicator) -> list[frozenset[str]]:
    """The fields each top-level conjunct reads (all the filter's when unclear)."""
    whole = frozenset(_filter_fields(indicator))
    out = []
    for node in _conjuncts(indicator):
        paths = _paths(node)
        out.append(whole if paths is None else paths)
    return out


def _paths(node: Mapping[str, Any]) -> frozenset[str] | None:
    """The record fields ``node`` reads, or None where the walk cannot tell."""
    path = _path(node)
    if path is not None:
        return frozenset({path})
    kind = node["type"]
    if kind == "literal":
        return frozenset()
    if kind not in _COMBINING:
        return None
    out: set[str] = set()
    for child in node.get("children", []):
        inner = _paths(child)
        if inner is None:
            return None
        out |= inner
    return frozenset(out)


_COMBINING: Final = frozenset(
    {
        "comparator",
        "and_expression",
        "or_expression",
        "not_expression",
        "function_expression",
        "multi_select_list",
    }
)


def _path(node: Mapping[str, Any]) -> str | None:
    """``a.b.c`` for a plain chain of fields from the record root, else None."""
    if node["type"] == "field":
        return str(node["value"])
    if node["type"] == "subexpression":
        parts = [_path(child) for child in node["children"]]
        if all(p is not None and "." not in p for p in parts[1:]) and parts[0]:
            return ".".join(str(p) for p in parts)
    return None


def _key(value: Any) -> _Key | None:
    """A scalar literal as JMESPath compares it (true is not 1; 1 equals 1.0)."""
    if value is None:
        return ("null", None)
    if isinstance(value, bool):
        return ("boolean", value)
    if isinstance(value, int | float):
        return ("number", float(value))
    if isinstance(value, str):
        return ("string", value)
    return None  # lists and objects: not worth comparing by hand


def _falsy(key: _Key) -> bool:
    return key in {("null", None), ("boolean", False), ("string", "")}


def _constraint(node: Mapping[str, Any]) -> _Constraint | None:
    """What a conjunct of a simple form says about one field, else None."""
    kind = node["type"]
    path = _path(node)
    if path is not None:
        return _Constraint(path, "truthy")
    if kind == "not_expression" and (inner := _path(node["children"][0])) is not None:
        return _Constraint(inner, "falsy")
    if kind == "comparator" and node["value"] in ("eq", "ne"):
        left, right = node["children"]
        if right["type"] != "literal":
            left, right = right, left
        path = _path(left)
        key = _key(right["value"]) if right["type"] == "literal" else None
        if path is None or key is None:
            return None
        kind_of = "in" if node["value"] == "eq" else "not_in"
        return _Constraint(path, kind_of, frozenset({key}))
    if kind == "or_expression":
        parts = [_constraint(p) for p in _split(node, "or_expression")]
        if all(p is not None and p.kind == "in" for p in parts):
            paths = {p.path for p in parts if p is not None}
            if len(paths) == 1:
                values = frozenset(v for p in parts if p is not None for v in p.values)
                return _Constraint(paths.pop(), "in", values)
    return None


def _constraints(indicator: Indicator) -> list[_Constraint]:
    found = (_constraint(node) for node in _conjuncts(indicator))
    return [c for c in found if c is not None]


def _disjoint(a: Indicator, b: Indicator) -> bool:
    """Whether no record can pass both filters (a sound, simple test).

    Every ``&&`` part of both filters that constrains one field is applied
    together; the filters are disjoint when no value of some field meets them all.
    """
    by_path: dict[str, list[_Constraint]] = {}
    for c in _constraints(a) + _constraints(b):
        by_path.setdefault(c.path, []).append(c)
    return any(_unsatisfiable(cs) for cs in by_path.values())


def _unsatisfiable(constraints: Sequence[_Constraint]) -> bool:
    allowed: frozenset[_Key] | None = None
    banned: set[_Key] = set()
    kinds = {c.kind for c in constraints}
    for c in constraints:
        if c.kind == "in":
            allowed = c.values if allowed is None else allowed & c.values
        elif c.kind == "not_in":
            banned |= c.values
    if allowed is None:
        return {"truthy", "falsy"} <= kinds
    left = [v for v in allowed if v not in banned]
    if "truthy" in kinds:
        left = [v for v in left if not _falsy(v)]
    if "falsy" in kinds:
        left = [v for v in left if _falsy(v)]
    return not left


def _message(a: Indicator, b: Indicator, dimensions: Sequence[Dimension]) -> str:
    # Name the filtered indicator as the one to fold into the other.
    inner, outer = (a, b) if b.filter_text is None else (b, a)
    where = f"{_FILE}: indicators {a.id!r} and {b.id!r} ({a.event_type})"
    if inner.filter_text is None:
        return (
            f"{where} both count every event: a cell one hides can be worked out "
            "from the other's cells; give one of them all the breakdowns"
        )
    taken = _taken(outer, dimensions)
    covered = [p for p in sorted(_filter_fields(inner)) if _overlaps([p], taken)]
    reads = ", ".join(
        _explain(path, outer) for path in covered or sorted(_filter_fields(inner))
    )
    return (
        f"{where} are linked tables: the filter of {inner.id!r} picks its events out "
        f"of the cells of {outer.id!r} through {reads}, so a cell one of them hides "
        f"can be worked out from the other's; make {inner.id!r} a breakdown of "
        f"{outer.id!r} (drop it and let readers break {outer.id!r} down), or break "
        f"{outer.id!r} down by no field the filter of {inner.id!r} reads, or give "
        f"that filter a condition (joined by &&) on a field {outer.id!r} neither "
        "breaks down by nor filters on, or make the two filters exclusive "
        "(f == 'a' in one, f != 'a' in the other)"
    )


def _explain(path: str, outer: Indicator) -> str:
    reads = breakdown_reads(outer)
    for field_path, dim_id in reads.items():
        if _overlaps([path], [field_path]):
            dim = outer.dimension(dim_id)
            if field_path == dim.fields[outer.event_type]:
                return f"{path} ({outer.id!r} breaks down by {dim_id})"
            return f"{path} ({outer.id!r} breaks down by {dim_id}, which determines it)"
    if _overlaps([path], _filter_fields(outer)):
        return f"{path} ({outer.id!r} filters on it too)"
    return f"{path} (what {outer.id!r} filters on determines it)"
