"""Linked indicators: why the loader refuses some pairs; the pairs it keeps are safe.

Two indicators of one event type are each protected on their own
(`disclosure.protect`). A reader holding both sees every published cell of both.
The test writes every cell of both lattices (total, one-way, two-way; zero cells
too) as a sum of the unknown *joint* counts: one per combination of the values of
every field the two indicators read (their breakdowns and their filters), leaving
out the combinations the reader knows cannot occur (an age band of a child with
``is_minor`` false). A suppressed cell is determined when its row is a combination
of the published cells' rows (exact rational elimination).

- a pair the loader refuses (children returned beside returns by age group) gives
  hidden cells away on random counts, though each indicator alone hides them;
- no pair of the shipped catalogue does, on random streams over small domains: a
  field only a filter reads takes a value the filter names and one it does not,
  so membership of such an indicator is free; nothing is determined by the pair
  that neither indicator gives away alone.

``PUENTE_PROPERTY_EXAMPLES`` sets the streams per pair (default 25).
"""

from __future__ import annotations

import itertools
import os
import random
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import UTC, datetime
from fractions import Fraction
from pathlib import Path
from typing import Any

import pytest

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue, Indicator, load_catalogue
from services.indicators.counting import Tally, period_bounds, period_cells
from services.indicators.disclosure import MAX_CROSSED, Protected, protect
from services.indicators.errors import CatalogueError
from services.policy import Policy, load_policy
from services.policy.loader import tree_of
from services.runtime.settings import REPO_ROOT
from tests.unit.indicators.conftest import indicator_block

EXAMPLES = int(os.environ.get("PUENTE_PROPERTY_EXAMPLES", "25"))
POLICY = REPO_ROOT / "deploy" / "policy"
SHIPPED = (POLICY / "indicators.toml").read_text(encoding="utf-8")
DIMENSIONS = SHIPPED[: SHIPPED.index("\n[[indicator]]\n") + 1]
AT = datetime(2026, 12, 2, 15, tzinfo=UTC)
Row = dict[int, Fraction]
Basis = dict[int, Row]
Atom = dict[str, Any]  # one combination of field values: path -> value


# ---------------------------------------------------------------- exact elimination


def _reduce(basis: Basis, row: Row) -> Row:
    """``row`` reduced by ``basis`` (pivot -> normalised row), exactly."""
    row = dict(row)
    for pivot in sorted(basis):
        factor = row.get(pivot)
        if factor:
            for k, v in basis[pivot].items():
                row[k] = row.get(k, Fraction(0)) - factor * v
                if not row[k]:
                    del row[k]
    return row


def _add(basis: Basis, row: Row) -> None:
    reduced = _reduce(basis, row)
    if reduced:
        pivot = min(reduced)
        scale = reduced[pivot]
        row = {k: v / scale for k, v in reduced.items()}
        # Keep the basis reduced, so one pass in pivot order reduces any row.
        for base in basis.values():
            factor = base.get(pivot)
            if factor:
                for k, v in row.items():
                    base[k] = base.get(k, Fraction(0)) - factor * v
                    if not base[k]:
                        del base[k]
        basis[pivot] = row


# ---------------------------------------------------------------- joint model


def _key(indicator: Indicator, atom: Atom) -> tuple[str, ...] | None:
    """The atom's cell in ``indicator``, None when its filter leaves it out."""
    datum = _nest(atom)
    if not indicator.selects(datum):
        return None
    derived = {
        d.derived: str(atom[f"derived.{d.derived}"])
        for d in indicator.dimensions
        if d.derived is not None
    }
    return indicator.key(datum, derived)


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        if path.startswith("derived."):
            continue
        *parents, last = path.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return out


def _lattice_rows(
    indicator: Indicator, keys: Sequence[tuple[str, ...] | None]
) -> Iterator[tuple[tuple[tuple[int, ...], tuple[str, ...]], Row]]:
    """Every cell of the indicator's lattice, as the atoms it sums."""
    n = len(indicator.dimensions)
    domains = [sorted({k[i] for k in keys if k is not None}) for i in range(n)]
    for r in range(min(MAX_CROSSED, n) + 1):
        for dims in itertools.combinations(range(n), r):
            for values in itertools.product(*(domains[i] for i in dims)):
                row = {
                    a: Fraction(1)
                    for a, k in enumerate(keys)
                    if k is not None
                    and all(k[d] == v for d, v in zip(dims, values, strict=True))
                }
                yield (dims, values), row


def determined_hidden_cells(
    pair: Sequence[Indicator],
    atoms: Sequence[Atom],
    protected: Mapping[str, Protected],
) -> list[tuple[str, Any]]:
    """The hidden cells of ``pair`` that the published cells of ``pair`` determine."""
    basis: Basis = {}
    hidden: list[tuple[str, Any, Row]] = []
    for indicator in pair:
        keys = [_key(indicator, atom) for atom in atoms]
        result = protected[indicator.id]
        for cell, row in _lattice_rows(indicator, keys):
            if cell in result.suppressed:
                hidden.append((indicator.id, cell, row))
            else:
                _add(basis, row)
    return [(ident, cell) for ident, cell, row in hidden if not _reduce(basis, row)]


def protect_each(
    pair: Sequence[Indicator], atoms: Sequence[Atom], counts: Sequence[int]
) -> dict[str, Protected]:
    """Count events through the real tally and protect each indicator on its own."""
    tally = Tally(Catalogue({i.id: i for i in pair}, {}))
    event_type = pair[0].event_type
    serial = itertools.count()
    for atom, n in zip(atoms, counts, strict=True):
        for _ in range(n):
            record = _nest(atom)
            record["envelope"] = {
                "event_id": f"e{next(serial)}",
                "occurred_at": int(AT.timestamp() * 1000),
            }
            tally.add(event_type, record)
    out = {}
    for indicator in pair:
        start, end = period_bounds(AT.date(), indicator.period)
        finest = period_cells(indicator, tally.day_counts(indicator.id), start, end)
        expected = sum(
            n for a, n in zip(atoms, counts, strict=True) if _key(indicator, a)
        )
        assert sum(finest.values()) == expected
        out[indicator.id] = protect(
            finest, len(indicator.dimensions), indicator.threshold
        )
    return out


def random_counts(rng: random.Random, n: int) -> list[int]:
    """Counts per atom: many empty, many small (suppressed), some publishable."""
    return [rng.choice([0, 0, 1, 2, 3, 4, 6, 9, 14]) for _ in range(n)]


def atoms_of(
    domains: Mapping[str, Sequence[Any]], possible: Callable[[Atom], bool]
) -> list[Atom]:
    """Every combination of the domains' values the reader cannot rule out."""
    paths = sorted(domains)
    combos = (
        dict(zip(paths, vs, strict=True))
        for vs in itertools.product(*(domains[p] for p in paths))
    )
    return [c for c in combos if possible(c)]


# ---------------------------------------------------------------- a refused pair


def _load(
    catalog: Catalog, policy: Policy, tmp_path: Path, blocks: Sequence[str]
) -> Catalogue:
    path = tmp_path / "indicators.toml"
    path.write_text(DIMENSIONS + "\n".join(blocks), encoding="utf-8")
    return load_catalogue(POLICY, catalog, policy, path)


MINOR_BANDS = {"AGE_0_4": True, "AGE_5_11": True, "AGE_12_17": True}


def _age_consistent(atom: Atom) -> bool:
    # is_minor is under 18 at occurred_at, the age band too: only UNKNOWN leaves it open
    band = atom.get("payload.person_profile.age_group", "UNKNOWN")
    minor = atom.get("payload.person_profile.is_minor")
    return band == "UNKNOWN" or minor is None or MINOR_BANDS.get(band, False) == minor


@pytest.fixture(scope="module")
def policy(catalog: Catalog) -> Policy:
    """The repository's policy."""
    return load_policy(POLICY, catalog)


def test_children_beside_returns_by_age_group_give_hidden_cells_away(
    catalog: Catalog, policy: Policy, tmp_path: Path
) -> None:
    returns = indicator_block("all_returns", ["sex", "age_group"], None)
    children = indicator_block(
        "children_returned", ["sex"], "payload.person_profile.is_minor"
    )
    with pytest.raises(CatalogueError, match="'all_returns' and 'children_returned'"):
        _load(catalog, policy, tmp_path, [returns, children])
    pair = [
        _load(catalog, policy, tmp_path, [returns]).get("all_returns"),
        _load(catalog, policy, tmp_path, [children]).get("children_returned"),
    ]
    atoms = atoms_of(
        {
            "payload.person_profile.sex": ["FEMALE", "MALE"],
            "payload.person_profile.age_group": ["AGE_5_11", "AGE_12_17", "AGE_18_29"],
            "payload.person_profile.is_minor": [True, False],
        },
        _age_consistent,
    )
    rng = random.Random(17)
    leaking, hidden_total, given_away = 0, 0, 0
    for _ in range(EXAMPLES):
        protected = protect_each(pair, atoms, random_counts(rng, len(atoms)))
        for indicator in pair:  # each alone hides what it suppresses
            assert not determined_hidden_cells([indicator], atoms, protected)
        found = determined_hidden_cells(pair, atoms, protected)
        hidden_total += sum(len(p.suppressed) for p in protected.values())
        given_away += len(found)
        leaking += bool(found)
    # Together they give hidden cells away: the leak the loader refuses is real.
    assert leaking > 0, (leaking, given_away, hidden_total)
    assert given_away > 0


# ---------------------------------------------------------------- the shipped pairs


def _shipped() -> Catalogue:
    catalog = Catalog.load(REPO_ROOT / "schemas")
    return load_catalogue(POLICY, catalog, load_policy(POLICY, catalog))


SHIPPED_CATALOGUE = _shipped()
# Small domains for the fields whose values are not a schema enum or boolean, or
# whose values must meet across fields (a child's age band, a department's code).
DOMAINS: dict[str, list[Any]] = {
    "payload.referral_id": ["r1"],
    # A child's accompaniment is a CHILD_ value: the domain needs one the filter
    # does not name for children and one for adults, or every child would pass.
    "payload.accompaniment": [
        "CHILD_UNACCOMPANIED",
        "CHILD_SEPARATED",
        "CHILD_WITH_PARENT_OR_GUARDIAN",
        "ADULT_ALONE",
    ],
    "payload.border_point_id": ["LB_LA_HACHADURA", "AIR_SAL"],
    "payload.minor_travel.authorization": [None, "NOTARIAL_PERMIT"],
    "payload.hazard_event_id": [None, "EV1"],
    "payload.hazard_type": [None, "FLOOD", "EARTHQUAKE"],
    "payload.lifecycle_event": ["CREATED", "ACCEPTED", "COMPLETED"],
    "payload.status": ["SENT", "ACCEPTED", "DONE"],
    "derived.time_to_acknowledgement": ["UNKNOWN", "UNDER_24H", "NOT_AN_ANSWER"],
}
STRINGS: dict[str, list[str]] = {
    "department_code": ["SV-AH", "SV-SS"],
    "municipality_code": ["0101", "0623"],
}
DEPARTMENT_NUMBER = {"SV-AH": "01", "SV-SS": "06"}
STATUS_AFTER = {"CREATED": "SENT", "ACCEPTED": "ACCEPTED", "COMPLETED": "DONE"}
ACK_OF = {"CREATED": "UNKNOWN", "ACCEPTED": "UNDER_24H", "COMPLETED": "NOT_AN_ANSWER"}


def _domain(catalog: Catalog, event_type: str, path: str, literals: str) -> list[Any]:
    """A few values of one field: those the filters name, and one they do not."""
    if path in DOMAINS:
        return DOMAINS[path]
    if path.endswith(".age_group"):
        return ["AGE_12_17", "AGE_18_29"]
    last = path.rsplit(".", 1)[-1]
    if last in STRINGS:
        return STRINGS[last]
    node = tree_of(catalog.versions(event_type)[-1]).nodes[path]
    shape = node.shape
    values: list[Any]
    if shape.kind == "enum":
        named = [s for s in shape.symbols if f"'{s}'" in literals]
        others = [s for s in shape.symbols if s not in named]
        values = named + others[: 1 if named else 2]
    elif shape.primitive == "boolean":
        values = [True, False]
    else:
        values = ["US", "MX"]
    return [None, *values] if node.nullable else values


def _possible(atom: Atom) -> bool:
    """What a reader knows of the fields' meaning (the catalogue's `determines`)."""
    for profile in ("person_profile", "traveller_profile", "subject_profile"):
        band = atom.get(f"payload.{profile}.age_group")
        minor = atom.get(f"payload.{profile}.is_minor")
        if band is not None and minor is not None and (band in MINOR_BANDS) != minor:
            return False
    minor = atom.get("payload.person_profile.is_minor")
    company = atom.get("payload.accompaniment")
    known = isinstance(company, str) and company != "UNKNOWN" and minor is not None
    if known and str(company).startswith("CHILD_") != minor:
        return False  # CHILD_ values are children's, ADULT_ values adults'
    return _travel_consistent(atom)


def _travel_consistent(atom: Atom) -> bool:
    # minor_travel is recorded only for a minor
    authorised = atom.get("payload.minor_travel.authorization") is not None
    if authorised and atom.get("payload.traveller_profile.is_minor") is False:
        return False
    return _consistent_places_and_events(atom)


def _consistent_places_and_events(atom: Atom) -> bool:
    for where in ("origin", "destination"):
        dept = atom.get(f"payload.{where}.department_code")
        town = atom.get(f"payload.{where}.municipality_code")
        if dept and town and not town.startswith(DEPARTMENT_NUMBER[dept]):
            return False
    flood = atom.get("payload.hazard_event_id") == "EV1"  # a flood's event id
    if flood and atom.get("payload.hazard_type") != "FLOOD":
        return False
    event = atom.get("payload.lifecycle_event")
    if event is None:
        return True
    status = atom.get("payload.status", STATUS_AFTER[event])
    ack = atom.get("derived.time_to_acknowledgement", ACK_OF[event])
    return bool(status == STATUS_AFTER[event] and ack == ACK_OF[event])


def _pair_atoms(catalog: Catalog, pair: Sequence[Indicator]) -> list[Atom]:
    event_type = pair[0].event_type
    literals = " ".join(i.filter_text or "" for i in pair)
    paths = set().union(*(i.fields_read() for i in pair))
    for indicator in pair:
        paths |= {f"derived.{d.derived}" for d in indicator.dimensions if d.derived}
    # A path inside a record field read whole is read through that field.
    paths = {p for p in paths if not any(q.startswith(p + ".") for q in paths)}
    domains = {p: _domain(catalog, event_type, p, literals) for p in paths}
    return atoms_of(domains, _possible)


def _protect_reference(
    pair: Sequence[Indicator], atoms: Sequence[Atom], counts: Sequence[int]
) -> dict[str, Protected]:
    out = {}
    for indicator in pair:
        finest: dict[tuple[str, ...], int] = {}
        for atom, n in zip(atoms, counts, strict=True):
            key = _key(indicator, atom)
            if key is not None and n:
                finest[key] = finest.get(key, 0) + n
        out[indicator.id] = protect(
            finest, len(indicator.dimensions), indicator.threshold
        )
    return out


SHIPPED_PAIRS = [
    (a.id, b.id)
    for a, b in itertools.combinations(SHIPPED_CATALOGUE.indicators.values(), 2)
    if a.event_type == b.event_type
]


def streams(atoms: Sequence[Atom], seed: object, n: int) -> Iterator[list[int]]:
    """``n`` random count vectors over ``atoms``, seeded by ``seed``.

    About a dozen occupied combinations per stream, so tables have small cells.
    """
    rng = random.Random(str(seed))
    occupied = min(1.0, 12 / len(atoms))
    for _ in range(n):
        yield [
            rng.choice([1, 2, 3, 4, 6, 9]) if rng.random() < occupied else 0
            for _ in atoms
        ]


# Nested breakdowns leak in a few streams of a hundred: enough of them to see it.
ALONE_STREAMS = max(EXAMPLES, 100)


@pytest.mark.parametrize("ident", list(SHIPPED_CATALOGUE.indicators))
def test_no_indicator_of_the_shipped_catalogue_gives_a_hidden_cell_away_alone(
    catalog: Catalog, ident: str
) -> None:
    # Its breakdowns may nest (a municipality within its department, a hazard type
    # within its cause group): the reader who knows it must still learn no hidden
    # cell from the published ones.
    indicator = SHIPPED_CATALOGUE.get(ident)
    atoms = _pair_atoms(catalog, [indicator])
    hidden = 0
    for counts in streams(atoms, f"{ident}/alone", ALONE_STREAMS):
        protected = _protect_reference([indicator], atoms, counts)
        hidden += len(protected[ident].suppressed)
        assert not determined_hidden_cells([indicator], atoms, protected), counts
    assert hidden  # the streams hid cells, so the check could have failed


@pytest.mark.parametrize(("first", "second"), SHIPPED_PAIRS)
def test_no_pair_of_the_shipped_catalogue_gives_a_hidden_cell_away(
    catalog: Catalog, first: str, second: str
) -> None:
    pair = [SHIPPED_CATALOGUE.get(first), SHIPPED_CATALOGUE.get(second)]
    atoms = _pair_atoms(catalog, pair)
    hidden = 0
    for counts in streams(atoms, f"{first}/{second}", EXAMPLES):
        protected = _protect_reference(pair, atoms, counts)
        hidden += sum(len(p.suppressed) for p in protected.values())
        assert not determined_hidden_cells(pair, atoms, protected), counts
    assert hidden  # the streams hid cells, so the check could have failed


# ---------------------------------------------------------------- the rule, both ways

Spec = tuple[str, list[str], str | None]
CHARTER = "payload.conveyance == 'FEDERAL_CHARTER_FLIGHT'"
LONG_STAY = "payload.time_abroad == 'OVER_5_YEARS'"
EVERYONE: Spec = ("everyone", ["sex", "age_group", "conveyance"], None)


def _given_away(pair: Sequence[Indicator], catalog: Catalog) -> tuple[int, int]:
    """Hidden cells the pair determines that neither does alone, and all hidden."""
    atoms = _pair_atoms(catalog, pair)
    given, hidden = 0, 0
    for counts in streams(atoms, 3, EXAMPLES):
        protected = _protect_reference(pair, atoms, counts)
        together = set(determined_hidden_cells(pair, atoms, protected))
        for indicator in pair:
            together -= set(determined_hidden_cells([indicator], atoms, protected))
        given += len(together)
        hidden += sum(len(p.suppressed) for p in protected.values())
    return given, hidden


def _apart(
    catalog: Catalog, policy: Policy, tmp_path: Path, specs: Sequence[Spec]
) -> list[Indicator]:
    """Each indicator loaded on its own (the loader may refuse the two together)."""
    return [
        _load(catalog, policy, tmp_path, [indicator_block(*spec)]).get(spec[0])
        for spec in specs
    ]


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (EVERYONE, ("charter", ["sex", "age_group"], CHARTER)),
        (
            EVERYONE,
            ("children", ["sex", "conveyance"], "payload.person_profile.is_minor"),
        ),
        (
            EVERYONE,
            (
                "charter_or_medical",
                ["sex", "conveyance"],
                f"{CHARTER} || payload.medical_attention_required",
            ),
        ),
        (  # every teenager is a minor
            (
                "teenagers",
                ["sex", "conveyance"],
                "payload.person_profile.age_group == 'AGE_12_17'",
            ),
            ("minors", ["sex", "age_group"], "payload.person_profile.is_minor"),
        ),
    ],
)
def test_a_pair_the_loader_refuses_gives_hidden_cells_away(
    catalog: Catalog, policy: Policy, tmp_path: Path, first: Spec, second: Spec
) -> None:
    with pytest.raises(CatalogueError, match="are linked tables"):
        _load(catalog, policy, tmp_path, [indicator_block(*s) for s in (first, second)])
    given, hidden = _given_away(
        _apart(catalog, policy, tmp_path, [first, second]), catalog
    )
    assert given > 0, hidden


@pytest.mark.parametrize(
    ("first", "second"),
    [
        (  # the second's events are cells of the first, but the first's filter
            # leaves out events free in every cell of the second
            ("long_stays", ["sex", "conveyance", "age_group"], LONG_STAY),
            ("charter", ["sex", "age_group"], CHARTER),
        ),
        (
            ("long_stays", ["sex", "age_group"], LONG_STAY),
            ("minors", ["sex", "accompaniment"], "payload.person_profile.is_minor"),
        ),
        (EVERYONE, ("long_charter", ["sex", "age_group"], f"{CHARTER} && {LONG_STAY}")),
    ],
)
def test_a_pair_the_loader_accepts_gives_no_hidden_cell_away(
    catalog: Catalog, policy: Policy, tmp_path: Path, first: Spec, second: Spec
) -> None:
    _load(catalog, policy, tmp_path, [indicator_block(*s) for s in (first, second)])
    given, hidden = _given_away(
        _apart(catalog, policy, tmp_path, [first, second]), catalog
    )
    assert given == 0
    assert hidden > 0
