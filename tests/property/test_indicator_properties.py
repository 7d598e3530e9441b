"""Indicators: disclosure control and exact counts, for random event streams (issue 17).

For every indicator of the shipped catalogue and random streams of its event type
(with redeliveries), over every period:

(a) no published cell of any table is below the indicator's threshold unless zero;
(b) no suppressed cell is determined by the published cells: the test writes every
    cell of every publishable table (total, one-way, two-way, zero cells too) as
    a sum of the unknown finest counts, and checks by exact rational elimination
    that no suppressed cell's row is a combination of the published cells' rows;
(c) the counts equal a reference counter's: each event id once, the indicator's
    filter evaluated by plain JMESPath.

``PUENTE_PROPERTY_EXAMPLES`` sets the streams per indicator (default 25).
"""

from __future__ import annotations

import itertools
import os
from collections.abc import Mapping
from datetime import UTC, date, datetime
from fractions import Fraction
from typing import Any
from zoneinfo import ZoneInfo

import jmespath
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from services.contracts.catalog import Catalog
from services.indicators.catalogue import Catalogue, Indicator, load_catalogue
from services.indicators.counting import Tally, period_bounds, period_cells
from services.indicators.disclosure import MAX_CROSSED, protect
from services.policy import load_policy
from services.policy.loader import tree_of
from services.runtime.settings import REPO_ROOT

EXAMPLES = int(os.environ.get("PUENTE_PROPERTY_EXAMPLES", "25"))
POLICY = REPO_ROOT / "deploy" / "policy"
# Two months, so streams cross a period boundary whatever the indicator's period.
DAYS = [datetime(2026, 11, 29, 18, tzinfo=UTC), datetime(2026, 12, 2, 15, tzinfo=UTC)]
DAYS += [datetime(2026, 12, 2, 16, tzinfo=UTC), datetime(2026, 12, 6, 9, tzinfo=UTC)]
STRINGS = ["SV-SS", "SV-AH", "0623"]
SV = ZoneInfo("America/El_Salvador")


def _catalogue() -> Catalogue:
    catalog = Catalog.load(REPO_ROOT / "schemas")
    return load_catalogue(POLICY, catalog, load_policy(POLICY, catalog))


CATALOGUE = _catalogue()


def _leaf(catalog: Catalog, event_type: str, path: str) -> st.SearchStrategy[Any]:
    """A small domain for one field, so streams fill cells of every size."""
    node = tree_of(catalog.versions(event_type)[-1]).nodes[path]
    shape = node.shape
    if shape.kind == "enum":
        values: st.SearchStrategy[Any] = st.sampled_from(shape.symbols[:3])
    elif shape.primitive == "boolean":
        values = st.booleans()
    else:
        values = st.sampled_from(STRINGS[:2])
    return st.one_of(st.none(), values) if node.nullable else values


def _nest(flat: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for path, value in flat.items():
        *parents, last = path.split(".")
        node = out
        for name in parents:
            node = node.setdefault(name, {})
        node[last] = value
    return out


def _records(
    catalog: Catalog, indicator: Indicator
) -> st.SearchStrategy[list[dict[str, Any]]]:
    paths = sorted(indicator.fields_read())
    fields: dict[str, st.SearchStrategy[Any]] = {
        p: _leaf(catalog, indicator.event_type, p) for p in paths
    }
    fields["envelope.event_id"] = st.sampled_from([f"e{i}" for i in range(40)])
    fields["envelope.occurred_at"] = st.sampled_from(
        [int(d.timestamp() * 1000) for d in DAYS]
    )
    if indicator.event_type == "referral":
        fields["payload.referral_id"] = st.sampled_from(["r1", "r2", "r3"])
        fields["payload.lifecycle_event"] = st.sampled_from(
            ["CREATED", "ACCEPTED", "REJECTED", "COMPLETED"]
        )
    one = st.fixed_dictionaries(fields).map(_nest)
    return st.lists(one, max_size=70)


def _first_of_each_id(records: list[dict[str, Any]]) -> list[dict[str, Any]]:
    seen: set[str] = set()
    out = []
    for r in records:
        if r["envelope"]["event_id"] not in seen:
            seen.add(r["envelope"]["event_id"])
            out.append(r)
    return out


def _truthy(value: Any) -> bool:
    # JMESPath truthiness: false, null and empty values are false; 0 is true.
    return value is not None and value is not False and value not in ("", [], {})


def _reference_totals(
    indicator: Indicator, records: list[dict[str, Any]]
) -> dict[date, int]:
    """Events per period start, counted the simple way."""
    totals: dict[date, int] = {}
    for r in _first_of_each_id(records):
        if indicator.filter_text and not _truthy(
            jmespath.search(indicator.filter_text, r)
        ):
            continue
        at = datetime.fromtimestamp(r["envelope"]["occurred_at"] / 1000, tz=UTC)
        local = at.astimezone(SV).date()
        start, _ = period_bounds(local, indicator.period)
        totals[start] = totals.get(start, 0) + 1
    return totals


def _rank_row(
    basis: dict[int, dict[int, Fraction]], row: dict[int, Fraction]
) -> dict[int, Fraction]:
    """``row`` reduced by ``basis`` (pivot -> normalised row), exactly."""
    row = dict(row)
    changed = True
    while changed:
        changed = False
        for pivot, base in basis.items():
            factor = row.get(pivot)
            if factor:
                for k, v in base.items():
                    row[k] = row.get(k, Fraction(0)) - factor * v
                    if not row[k]:
                        del row[k]
                changed = True
    return row


def _add(basis: dict[int, dict[int, Fraction]], row: dict[int, Fraction]) -> None:
    reduced = _rank_row(basis, row)
    if reduced:
        pivot = min(reduced)
        scale = reduced[pivot]
        basis[pivot] = {k: v / scale for k, v in reduced.items()}


def _check_period(indicator: Indicator, finest: dict[tuple[str, ...], int]) -> None:
    n = len(indicator.dimensions)
    result = protect(finest, n, indicator.threshold)
    # (a) nothing published below the threshold unless zero
    for key, count in result.counts.items():
        if key not in result.suppressed:
            assert count == 0 or count >= indicator.threshold, (key, count)
    # (b) every publishable cell as a sum of unknown finest counts, over the whole
    # product of the values seen (zero cells are published zeros).
    domains = [sorted({k[i] for k in finest}) for i in range(n)]
    latent = list(itertools.product(*domains)) if finest else []
    position = {v: i for i, v in enumerate(latent)}
    basis: dict[int, dict[int, Fraction]] = {}
    hidden: list[dict[int, Fraction]] = []
    for r in range(min(MAX_CROSSED, n) + 1):
        for dims in itertools.combinations(range(n), r):
            for values in itertools.product(*(domains[i] for i in dims)):
                row = {
                    position[v]: Fraction(1)
                    for v in latent
                    if all(v[d] == x for d, x in zip(dims, values, strict=True))
                }
                if (dims, values) in result.suppressed:
                    hidden.append(row)
                else:
                    _add(basis, row)
    for row in hidden:
        assert _rank_row(basis, row), "a suppressed cell is determined by published ones"


@pytest.mark.parametrize("indicator_id", list(CATALOGUE.indicators))
def test_published_tables_are_safe_and_exact(catalog: Catalog, indicator_id: str) -> None:
    indicator = CATALOGUE.get(indicator_id)

    @settings(
        max_examples=EXAMPLES,
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )
    @given(records=_records(catalog, indicator), redelivered=st.data())
    def check(records: list[dict[str, Any]], redelivered: st.DataObject) -> None:
        again = (
            redelivered.draw(st.lists(st.sampled_from(records), max_size=10))
            if records
            else []
        )
        tally = Tally(CATALOGUE)
        for r in records + again:
            tally.add(indicator.event_type, r)
        counts = tally.day_counts(indicator.id)
        expected = _reference_totals(indicator, records)
        starts = {period_bounds(d, indicator.period)[0] for d, _ in counts} | set(
            expected
        )
        for start in starts:
            _, end = period_bounds(start, indicator.period)
            finest = period_cells(indicator, counts, start, end)
            # (c) exact totals, redeliveries included
            assert sum(finest.values()) == expected.get(start, 0)
            _check_period(indicator, finest)

    check()
