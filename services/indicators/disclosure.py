"""Disclosure control (pure): primary and complementary small-cell suppression.

A published table of one period crosses at most two of the indicator's dimensions
and carries its margins, so every table that can ever be published for a period
is a set of cells of one *lattice*: the total, every one-way table and every
two-way table of the indicator's dimensions. Suppression is decided once for the
whole lattice, so any number of published tables over the same period, taken
together, show only cells of one protected pattern.

- *Primary*: a cell with 0 < count < threshold is suppressed. Zero is published
  (a zero reveals no one).
- *Complementary*: the lattice's cells are tied by linear equations (a one-way
  cell is the sum of its row in every two-way table; the total is the sum of every
  one-way table). The suppressed cells are the unknowns of that system once the
  published cells are put in; a suppressed cell is *determined* when every
  solution gives it the same value. Elimination (reduced row echelon form) finds
  those cells; while there is one, the published cell of one of its equations that
  leaves the fewest determined cells is suppressed too. The search eliminates
  modulo a 61-bit prime; the pattern it ends with is checked with exact rational
  arithmetic, and the search goes on exactly if that check finds anything.

Three or more crossed dimensions are never published. With two-way tables only,
the margin equations are the linear relations between published cells, and one
more kind that the published zeros give away: where a value ``a`` of one
dimension occurs (nonzero two-way cells) only with values ``b1 … bk`` of another,
and each of those only with ``a`` — a municipality within its department, a hazard
type within its cause group, or two breakdowns that happen to nest in a period's
data — every event of ``a`` is an event of one of the ``b``s, so for each third
dimension ``(a, c) = (b1, c) + … + (bk, c)``. Counts cannot be negative, so a reader
knows this from the zeros alone; the system holds these equations too
(`nested_equations`).
"""

from __future__ import annotations

import itertools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any, Final, Literal

# A cell of the lattice: the dimension indices it crosses (sorted, at most two)
# and their values.
CellKey = tuple[tuple[int, ...], tuple[str, ...]]
Reason = Literal["primary", "complementary"]
PRIMARY: Final[Reason] = "primary"
COMPLEMENTARY: Final[Reason] = "complementary"
MAX_CROSSED: Final = 2
# How many complement candidates are tried per determined cell; one only once the
# hidden cells are many (each try is an elimination over all of them: small-area
# breakdowns such as municipalities otherwise take minutes for one period).
_TRIES: Final = 8
_MANY_HIDDEN: Final = 120
_MANY_TO_PUBLISH_AGAIN: Final = 250
_PRIME: Final = 2**61 - 1
TOTAL: Final[CellKey] = ((), ())


@dataclass(frozen=True, slots=True)
class Protected:
    """A period's lattice after suppression: every nonzero cell, and what is hidden."""

    counts: Mapping[CellKey, int]
    suppressed: Mapping[CellKey, Reason] = field(default_factory=dict)
    threshold: int = 5

    def published(self, key: CellKey) -> int | None:
        """The cell's count as published (zero when absent), None when suppressed."""
        if key in self.suppressed:
            return None
        return self.counts.get(key, 0)


def lattice(finest: Mapping[tuple[str, ...], int], n_dims: int) -> dict[CellKey, int]:
    """Every nonzero cell of the total, one-way and two-way tables of ``finest``."""
    out: dict[CellKey, int] = {}
    subsets = [
        s
        for r in range(min(MAX_CROSSED, n_dims) + 1)
        for s in itertools.combinations(range(n_dims), r)
    ]
    for values, n in finest.items():
        if n <= 0:
            continue
        for dims in subsets:
            key = (dims, tuple(values[i] for i in dims))
            out[key] = out.get(key, 0) + n
    return out


def equations(cells: Iterable[CellKey]) -> list[tuple[CellKey, list[CellKey]]]:
    """The additivity equations between nonzero cells: (sum, its parts)."""
    parts: dict[tuple[CellKey, int], list[CellKey]] = {}
    for dims, values in cells:
        # A cell is a part of every cell that drops exactly one of its dimensions
        # (one equation per parent and dropped dimension).
        for drop in range(len(dims)):
            parent = (dims[:drop] + dims[drop + 1 :], values[:drop] + values[drop + 1 :])
            parts.setdefault((parent, dims[drop]), []).append((dims, values))
    return sorted((parent, sorted(members)) for (parent, _), members in parts.items())


def nested_equations(
    counts: Mapping[CellKey, int], n_dims: int
) -> list[tuple[CellKey, list[CellKey]]]:
    """The equations of values nested in another dimension's values (module doc)."""
    out: list[tuple[CellKey, list[CellKey]]] = []
    for outer, inner in itertools.permutations(range(n_dims), 2):
        for a, bs in _nested(counts, outer, inner).items():
            for third in range(n_dims):
                if third not in {outer, inner}:
                    out.extend(_through(counts, (outer, a), (inner, bs), third))
    return sorted(out)


def _nested(
    counts: Mapping[CellKey, int], outer: int, inner: int
) -> dict[str, list[str]]:
    """Each value of ``outer`` whose ``inner`` values occur with no other value."""
    dims = (min(outer, inner), max(outer, inner))
    partners: dict[str, set[str]] = {}  # inner value -> outer values seen with it
    within: dict[str, set[str]] = {}  # outer value -> inner values seen with it
    for (d, values), n in counts.items():
        if d == dims and n > 0:
            a, b = values[dims.index(outer)], values[dims.index(inner)]
            within.setdefault(a, set()).add(b)
            partners.setdefault(b, set()).add(a)
    return {
        a: sorted(bs) for a, bs in within.items() if all(partners[b] == {a} for b in bs)
    }


def _through(
    counts: Mapping[CellKey, int],
    whole: tuple[int, str],
    parts: tuple[int, Sequence[str]],
    third: int,
) -> list[tuple[CellKey, list[CellKey]]]:
    """``(a, c) = sum of (b, c)`` for every value ``c`` of ``third``."""

    def cell(dim: int, value: str, c: str) -> CellKey:
        pair = sorted(((dim, value), (third, c)))
        return (pair[0][0], pair[1][0]), (pair[0][1], pair[1][1])

    (dim_a, a), (dim_b, bs) = whole, parts
    seen = {
        values[dims.index(third)]
        for (dims, values), n in counts.items()
        if n > 0 and len(dims) == 2 and third in dims
    }
    out = []
    for c in sorted(seen):
        members = [k for b in bs if counts.get(k := cell(dim_b, b, c), 0) > 0]
        key = cell(dim_a, a, c)
        if members or counts.get(key, 0) > 0:
            out.append((key, members))
    return out


def protect(
    finest: Mapping[tuple[str, ...], int], n_dims: int, threshold: int
) -> Protected:
    """Suppress the lattice of ``finest`` (cells of ``n_dims`` values) for publication."""
    counts = lattice(finest, n_dims)
    eqs = equations(counts) + nested_equations(counts, n_dims)
    suppressed: dict[CellKey, Reason] = {
        k: PRIMARY for k, n in counts.items() if 0 < n < threshold
    }
    involved: dict[CellKey, list[int]] = {}
    for index, (whole, members) in enumerate(eqs):
        for key in (whole, *members):
            involved.setdefault(key, []).append(index)
    for exact in (False, True):  # modulo a prime for speed, then checked exactly
        if exact:
            _publish_again(counts, suppressed, eqs, involved)
        determined = determined_cells(counts, suppressed, eqs, exact=exact)
        while determined:
            extra = _complement(
                determined, counts, suppressed, eqs, involved, exact=exact
            )
            if extra is None:
                break  # every nonzero cell is suppressed: nothing is determined then
            suppressed[extra] = COMPLEMENTARY
            # Only the unknowns tied to the new one by equations can change fate.
            part = _component(extra, suppressed, eqs, involved)
            touching = [eqs[i] for i in _touching(part, involved)]
            determined = sorted(
                {k for k in determined if k not in part}
                | set(determined_cells(counts, part, touching, exact=exact))
            )
    return Protected(counts, suppressed, threshold)


def _publish_again(
    counts: Mapping[CellKey, int],
    suppressed: dict[CellKey, Reason],
    eqs: Sequence[tuple[CellKey, list[CellKey]]],
    involved: Mapping[CellKey, list[int]],
) -> None:
    """Publish again every complementary cell the pattern does not need, largest first.

    The greedy search hides cells one at a time and never looks back, so a cell
    hidden early can become needless once later ones are hidden. Each is tried:
    published again, the hidden cells tied to it by equations are checked, and it
    stays published only when none of them is determined. Beyond
    `_MANY_TO_PUBLISH_AGAIN` hidden cells the pattern is kept as found: each try is
    an elimination over most of them.
    """
    hidden = [k for k, why in suppressed.items() if why == COMPLEMENTARY]
    if len(hidden) > _MANY_TO_PUBLISH_AGAIN:
        return
    for key in sorted(hidden, key=lambda k: (-counts[k], k)):
        del suppressed[key]
        part: dict[CellKey, Reason] = {}
        for i in involved.get(key, []):
            whole, members = eqs[i]
            for other in (whole, *members):
                if other in suppressed and other not in part:
                    part.update(_component(other, suppressed, eqs, involved))
        touching = [eqs[i] for i in _touching(part, involved)]
        if determined_cells(counts, part, touching, exact=False):
            suppressed[key] = COMPLEMENTARY


def determined_cells(
    counts: Mapping[CellKey, int],
    suppressed: Mapping[CellKey, Reason],
    eqs: Sequence[tuple[CellKey, list[CellKey]]],
    *,
    exact: bool = True,
) -> list[CellKey]:
    """The suppressed cells whose value the published cells fix, in a stable order.

    ``exact``: rational arithmetic. Without it, arithmetic modulo a 61-bit prime:
    many times faster and the same answer unless the prime divides a determinant of
    the system, so the search runs on it and its final pattern is checked exactly.
    """
    unknown = sorted(suppressed)
    index = {k: i for i, k in enumerate(unknown)}
    insert = _insert if exact else _insert_mod
    rows: dict[int, dict[int, Any]] = {}
    for whole, members in eqs:
        row: dict[int, int] = {}
        for key, sign in ((whole, -1), *((m, 1) for m in members)):
            if key in index:
                row[index[key]] = row.get(index[key], 0) + sign
        nonzero: dict[int, Any] = {
            k: (Fraction(v) if exact else v % _PRIME) for k, v in row.items() if v
        }
        if nonzero:
            insert(rows, nonzero)
    # A pivot whose reduced row holds no free unknown has one value in every solution.
    return [key for i, key in enumerate(unknown) if len(rows.get(i) or ()) == 1]


def _insert_mod(rows: dict[int, dict[int, Any]], row: dict[int, Any]) -> None:
    """`_insert` modulo `_PRIME`."""
    for pivot in sorted(k for k in row if k in rows):
        factor = row.get(pivot)
        if factor:
            for k, v in rows[pivot].items():
                value = (row.get(k, 0) - factor * v) % _PRIME
                if value:
                    row[k] = value
                else:
                    row.pop(k, None)
    if not row:
        return
    pivot = min(row)
    inverse = pow(row[pivot], _PRIME - 2, _PRIME)
    row = {k: v * inverse % _PRIME for k, v in row.items()}
    for other in rows.values():
        factor = other.get(pivot)
        if factor:
            for k, v in row.items():
                value = (other.get(k, 0) - factor * v) % _PRIME
                if value:
                    other[k] = value
                else:
                    other.pop(k, None)
    rows[pivot] = row


def _insert(rows: dict[int, dict[int, Any]], row: dict[int, Any]) -> None:
    """Add ``row`` to a reduced row echelon form kept as pivot -> row."""
    for pivot in sorted(k for k in row if k in rows):
        factor = row.get(pivot)
        if factor:
            _axpy(row, rows[pivot], -factor)
    if not row:
        return
    pivot = min(row)
    scale = row[pivot]
    row = {k: v / scale for k, v in row.items()}
    for other in rows.values():
        factor = other.get(pivot)
        if factor:
            _axpy(other, row, -factor)
    rows[pivot] = row


def _axpy(
    target: dict[int, Fraction], source: Mapping[int, Fraction], a: Fraction
) -> None:
    for k, v in source.items():
        value = target.get(k, Fraction(0)) + a * v
        if value:
            target[k] = value
        else:
            target.pop(k, None)


def _complement(
    determined: Sequence[CellKey],
    counts: Mapping[CellKey, int],
    suppressed: Mapping[CellKey, Reason],
    eqs: Sequence[tuple[CellKey, list[CellKey]]],
    involved: Mapping[CellKey, list[int]],
    *,
    exact: bool = True,
) -> CellKey | None:
    """The next published cell to suppress, while some suppressed cell is determined.

    Candidates are the published cells of the equations a determined cell is in:
    the same table as that cell first, then the smallest (hide as little as
    possible). The first few are tried, and the one that leaves the fewest
    determined cells wins; when none helps at once (a cycle of hidden cells takes
    several steps to close), the first is taken.
    """
    order: dict[CellKey, tuple[bool, int, int, CellKey]] = {}
    for key in determined:
        level = len(key[0])
        for i in involved.get(key, []):
            whole, members = eqs[i]
            for k in (whole, *members):
                if k in suppressed or counts.get(k, 0) <= 0:
                    continue
                rank = (k[0] != key[0], abs(len(k[0]) - level), counts[k], k)
                order[k] = min(order.get(k, rank), rank)
    if not order:
        order = {
            k: (False, 0, n, k)
            for k, n in counts.items()
            if k not in suppressed and n > 0
        }
    if not order:
        return None
    candidates = sorted(order, key=order.__getitem__)
    if len(suppressed) > _MANY_HIDDEN:
        return candidates[0]
    before = set(determined)
    best, best_gain = candidates[0], 0
    for candidate in candidates[:_TRIES]:
        trial = {**suppressed, candidate: COMPLEMENTARY}
        # Only the unknowns tied to the candidate by equations can change their fate.
        part = _component(candidate, trial, eqs, involved)
        touching = [eqs[i] for i in _touching(part, involved)]
        after = determined_cells(counts, part, touching, exact=exact)
        gain = len(before & part.keys()) - len(after)
        if gain > best_gain:
            best, best_gain = candidate, gain
    return best


def _component(
    start: CellKey,
    unknown: Mapping[CellKey, Reason],
    eqs: Sequence[tuple[CellKey, list[CellKey]]],
    involved: Mapping[CellKey, list[int]],
) -> dict[CellKey, Reason]:
    """The unknowns linked to ``start`` through equations that hold two of them."""
    found = {start}
    todo = [start]
    while todo:
        cell = todo.pop()
        for i in involved.get(cell, []):
            whole, members = eqs[i]
            for other in (whole, *members):
                if other in unknown and other not in found:
                    found.add(other)
                    todo.append(other)
    return {k: unknown[k] for k in found if k in unknown}


def _touching(
    cells: Mapping[CellKey, Reason], involved: Mapping[CellKey, list[int]]
) -> list[int]:
    return sorted({i for k in cells for i in involved.get(k, [])})


def rounded(value: int, base: int | None) -> int:
    """``value`` rounded to the nearest multiple of ``base`` (halves up); 0 stays 0."""
    if not base or base <= 1 or value == 0:
        return value
    return max(base, ((value + base // 2) // base) * base)
