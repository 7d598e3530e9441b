"""Published tables: one indicator over whole periods, protected, as JSON or HXL CSV.

A request names a range of days and up to two dimensions (``by``). The answer has
one table per whole period (day, ISO week or month, as the catalogue fixes for the
indicator) that meets the range: never a part of a period, because a sum over an
arbitrary range would be a further table linked to the published ones. Each table
holds the crossed cells and their margins (``ALL``), cut from the period's lattice
protected once (disclosure.py); a suppressed cell has no count and says why.
Cells not listed are zero.

Only released periods are published (store.py freezes an indicator's counts up
to a day some days after each period ends): a period still filling would show a
reader, from two requests at different times, exactly which cells the events in
between fell in. A period not released yet is listed with the day it may be.
Operators may see those periods from the live counts, marked provisional.
"""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import date
from typing import Any, Final

from services.indicators.catalogue import Indicator
from services.indicators.counting import (
    closes_on,
    period_cells,
    period_label,
    periods_between,
)
from services.indicators.disclosure import (
    MAX_CROSSED,
    CellKey,
    Protected,
    Reason,
    protect,
    rounded,
)
from services.indicators.errors import QueryError

ALL: Final = "ALL"
MAX_PERIODS: Final = 400
DayCounts = Mapping[tuple[date, tuple[str, ...]], int]
# (indicator, period, finest cells) -> the protected lattice; the caller owns it.
Cache = dict[tuple[str, str, frozenset[tuple[tuple[str, ...], int]]], Protected]


@dataclass(frozen=True, slots=True)
class Cell:
    """One published cell: a value per dimension of ``by`` (or ALL), and its count."""

    values: tuple[str, ...]
    count: int | None
    suppressed: Reason | None = None


@dataclass(frozen=True, slots=True)
class PeriodTable:
    """The cells of one whole period."""

    period: str
    first: date
    last: date
    provisional: bool
    cells: tuple[Cell, ...]


@dataclass(frozen=True, slots=True)
class Pending:
    """A period of the range not released yet, and the first day it may be."""

    period: str
    first: date
    last: date
    release_on: date


@dataclass(frozen=True, slots=True)
class Counts:
    """What a publication is cut from: the released counts, and the live ones.

    ``live`` is for operators only (gauges, ``export --provisional``): periods not
    released yet are then shown from it, marked provisional.
    """

    released: DayCounts
    through: date | None
    release_after: int
    live: DayCounts | None = None


@dataclass(frozen=True, slots=True)
class Publication:
    """Everything one request publishes."""

    indicator: Indicator
    by: tuple[str, ...]
    tables: tuple[PeriodTable, ...]
    rounding: int | None = None
    released_through: date | None = None
    pending: tuple[Pending, ...] = ()

    def suppressed(self, reason: Reason) -> int:
        """How many published cells were suppressed for ``reason``."""
        return sum(1 for t in self.tables for c in t.cells if c.suppressed == reason)


def check_by(indicator: Indicator, by: Sequence[str], reader: str | None) -> None:
    """Raise `QueryError` unless ``by`` is a breakdown ``reader`` may ask for."""
    if len(by) > MAX_CROSSED:
        raise QueryError(
            f"a table crosses at most {MAX_CROSSED} dimensions; asked for {len(by)}"
        )
    if len(set(by)) != len(by):
        raise QueryError("a dimension is named twice in by")
    allowed = (
        indicator.reader_dimensions.get(reader, ())
        if reader is not None
        else indicator.dimension_ids
    )
    for ident in by:
        if ident not in allowed:
            offered = ", ".join(allowed) or "none"
            raise QueryError(
                f"{indicator.id} cannot be broken down by {ident!r} here; "
                f"allowed: {offered}"
            )


def publish(
    indicator: Indicator,
    counts: Counts,
    first: date,
    last: date,
    by: Sequence[str] = (),
    *,
    reader: str | None = None,
    rounding: int | None = None,
    cache: Cache | None = None,
) -> Publication:
    """The protected tables of ``indicator`` for the periods meeting [first, last]."""
    check_by(indicator, by, reader)
    if last < first:
        raise QueryError(f"the range ends ({last}) before it starts ({first})")
    periods = periods_between(first, last, indicator.period)
    if len(periods) > MAX_PERIODS:
        raise QueryError(
            f"{len(periods)} {indicator.period} periods asked for; at most {MAX_PERIODS}"
        )
    index = tuple(indicator.dimension_ids.index(d) for d in by)
    tables, pending = [], []
    for start, end in periods:
        label = period_label(start, indicator.period)
        released = counts.through is not None and end <= counts.through
        source = counts.released if released else counts.live
        if source is None:
            pending.append(
                Pending(label, start, end, closes_on(end, counts.release_after))
            )
            continue
        finest = period_cells(indicator, source, start, end)
        lattice = protected(indicator, label, finest, cache)
        cells = tuple(_cells(lattice, index, rounding))
        tables.append(PeriodTable(label, start, end, not released, cells))
    return Publication(
        indicator,
        tuple(by),
        tuple(tables),
        rounding,
        counts.through,
        tuple(pending),
    )


def protected(
    indicator: Indicator,
    period: str,
    finest: Mapping[tuple[str, ...], int],
    cache: Cache | None = None,
) -> Protected:
    """The period's protected lattice (from ``cache`` when the counts are unchanged)."""
    key = (indicator.id, period, frozenset(finest.items()))
    if cache is not None and key in cache:
        return cache[key]
    result = protect(finest, len(indicator.dimensions), indicator.threshold)
    if cache is not None:
        if len(cache) > 4096:
            cache.clear()
        cache[key] = result
    return result


def _cells(
    lattice: Protected, index: tuple[int, ...], rounding: int | None
) -> list[Cell]:
    out = []
    for r in range(len(index) + 1):
        for dims in itertools.combinations(sorted(index), r):
            found = [
                (values, n)
                for (d, values), n in sorted(lattice.counts.items())
                if d == dims and n > 0
            ]
            if not dims:
                found = [((), lattice.counts.get(((), ()), 0))]
            for values, n in found:
                key: CellKey = (dims, values)
                shown = [ALL] * len(index)
                for dim, value in zip(dims, values, strict=True):
                    shown[index.index(dim)] = value
                reason = lattice.suppressed.get(key)
                count = None if reason else rounded(n, rounding)
                out.append(Cell(tuple(shown), count, reason))
    return out


def as_json(publication: Publication) -> dict[str, Any]:
    """The publication as a JSON-ready object that states what was suppressed, why."""
    ind = publication.indicator
    return {
        "indicator": ind.id,
        "title": ind.title,
        "definition": ind.definition,
        "working_group": ind.working_group,
        "gcm_objective": ind.gcm_objective,
        "event_type": ind.event_type,
        "period": ind.period,
        "by": list(publication.by),
        "disclosure_control": {
            "threshold": ind.threshold,
            "primary": f"cells counting 1 to {ind.threshold - 1} are suppressed",
            "complementary": (
                "further cells are suppressed so that no suppressed cell can be "
                "worked out from the published cells of any table of the period"
            ),
            "rounding": publication.rounding,
            "zero": "published; cells not listed are zero",
            "suppressed_primary": publication.suppressed("primary"),
            "suppressed_complementary": publication.suppressed("complementary"),
        },
        "released_through": (
            None
            if publication.released_through is None
            else publication.released_through.isoformat()
        ),
        "pending": [
            {
                "period": p.period,
                "from": p.first.isoformat(),
                "to": p.last.isoformat(),
                "release_on": p.release_on.isoformat(),
            }
            for p in publication.pending
        ],
        "tables": [
            {
                "period": t.period,
                "from": t.first.isoformat(),
                "to": t.last.isoformat(),
                "provisional": t.provisional,
                "cells": [_json_cell(publication.by, c) for c in t.cells],
            }
            for t in publication.tables
        ],
    }


def _json_cell(by: Sequence[str], cell: Cell) -> dict[str, Any]:
    out: dict[str, Any] = dict(zip(by, cell.values, strict=True))
    out["count"] = cell.count
    if cell.suppressed:
        out["suppressed"] = cell.suppressed
    return out


def as_hxl_csv(publication: Publication) -> str:
    """The publication as CSV with an HXL hashtag row under the header row."""
    ind = publication.indicator
    dims = [ind.dimension(d) for d in publication.by]
    buffer = io.StringIO()
    writer = csv.writer(buffer, lineterminator="\n")
    writer.writerow(
        ["Period", "From", "To", *(d.label for d in dims), ind.title, "Suppressed"]
    )
    tags = [d.hxl for d in dims]
    writer.writerow(
        ["#date", "#date+start", "#date+end", *tags, ind.hxl, "#meta+suppressed"]
    )
    codes: list[Callable[[str], str]] = [d.code for d in dims]
    for table in publication.tables:
        for cell in table.cells:
            shown = [
                "all" if v == ALL else code(v)
                for code, v in zip(codes, cell.values, strict=True)
            ]
            count = "" if cell.count is None else str(cell.count)
            start, end = table.first.isoformat(), table.last.isoformat()
            writer.writerow(
                [table.period, start, end, *shown, count, cell.suppressed or ""]
            )
    return buffer.getvalue()
