"""Counting (pure): which cell of which indicator an event adds one to, once.

Counts are kept per day (El Salvador's calendar day of ``envelope.occurred_at``)
and per cell (one value per dimension of the indicator); weeks (ISO) and months
are sums of days. An event id seen before adds nothing, so redelivery (the router
delivers at least once) and a rebuild from the start of the topic give the same
counts. The time to acknowledge a referral is worked out from the referral's
CREATED event, remembered by its (per-recipient, stable) referral id.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from typing import Any, Final
from zoneinfo import ZoneInfo

from services.indicators.catalogue import (
    Catalogue,
    Indicator,
    Period,
    identifier,
)
from services.policy.policy import field_value

LOCAL: Final = ZoneInfo("America/El_Salvador")
ACK_EVENTS: Final = frozenset({"ACCEPTED", "REJECTED"})
ACK_BANDS: Final = ((24, "UNDER_24H"), (72, "24H_TO_72H"))
ACK_LATE: Final = "OVER_72H"
# Lifecycle events that are not a first answer have no time to acknowledgement.
NOT_AN_ANSWER: Final = "NOT_AN_ANSWER"


@dataclass(frozen=True, slots=True)
class Contribution:
    """One event's +1 to one cell of one indicator on one day."""

    indicator: str
    day: date
    cell: tuple[str, ...]


def occurred_day(datum: Mapping[str, Any]) -> date | None:
    """The local calendar day the event occurred (None if the record has no time)."""
    at = occurred_at(datum)
    return None if at is None else at.astimezone(LOCAL).date()


def occurred_at(datum: Mapping[str, Any]) -> datetime | None:
    """``envelope.occurred_at`` as an aware datetime (decoded or plain millis)."""
    value = field_value(datum, "envelope.occurred_at")
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    if isinstance(value, int) and not isinstance(value, bool):
        return datetime.fromtimestamp(value / 1000, tz=UTC)
    return None


def period_label(day: date, period: Period) -> str:
    """The period ``day`` falls in: ``2026-12-07``, ``2026-W49`` or ``2026-12``."""
    if period == "day":
        return day.isoformat()
    if period == "week":
        year, week, _ = day.isocalendar()
        return f"{year}-W{week:02d}"
    return f"{day.year}-{day.month:02d}"


def period_bounds(day: date, period: Period) -> tuple[date, date]:
    """The first and last day of the period ``day`` falls in."""
    if period == "day":
        return day, day
    if period == "week":
        start = day - timedelta(days=day.isoweekday() - 1)
        return start, start + timedelta(days=6)
    start = day.replace(day=1)
    following = (start + timedelta(days=32)).replace(day=1)
    return start, following - timedelta(days=1)


def covering(first: date, last: date, period: Period) -> tuple[date, date] | None:
    """The days of the whole periods that meet [first, last] (None: an empty range)."""
    if last < first:
        return None
    return period_bounds(first, period)[0], period_bounds(last, period)[1]


def periods_between(start: date, end: date, period: Period) -> list[tuple[date, date]]:
    """Every whole period that meets [start, end], in order."""
    out = []
    day = start
    while day <= end:
        first, last = period_bounds(day, period)
        out.append((first, last))
        day = last + timedelta(days=1)
    return out


def closes_on(last: date, release_after: int) -> date:
    """The day a period ending on ``last`` may be released (from its local midnight)."""
    return last + timedelta(days=1 + release_after)


def closed_through(period: Period, today: date, release_after: int) -> date:
    """The last day of the latest period that may be released on ``today``.

    A period may be released ``release_after`` whole days after it ends, so events
    recorded late (a registration typed in the next morning) are in its table.
    """
    latest = today - timedelta(days=1 + release_after)
    first, last = period_bounds(latest, period)
    return last if last == latest else first - timedelta(days=1)


def ack_band(sent: datetime, answered: datetime) -> str:
    """The time-to-acknowledgement band of an answer given ``answered - sent``."""
    hours = (answered - sent).total_seconds() / 3600
    for limit, band in ACK_BANDS:
        if hours < limit:
            return band
    return ACK_LATE


@dataclass
class Tally:
    """Counts of every indicator, per day and cell, with event-id de-duplication.

    ``add`` returns what one event contributed, so a store can persist exactly
    that together with the event id, in one transaction.
    """

    catalogue: Catalogue
    counts: dict[str, dict[tuple[date, tuple[str, ...]], int]] = field(
        default_factory=dict
    )
    seen: set[str] = field(default_factory=set)
    referral_sent: dict[str, datetime] = field(default_factory=dict)

    def add(self, event_type: str, datum: Mapping[str, Any]) -> list[Contribution]:
        """Count one delivered record; nothing when its event id was counted before."""
        event_id = identifier(datum, "envelope.event_id")
        if event_id is None or event_id in self.seen:
            return []
        self.seen.add(event_id)
        derived = self._derived(event_type, datum)
        out = list(contributions(self.catalogue, event_type, datum, derived))
        for c in out:
            cells = self.counts.setdefault(c.indicator, {})
            cells[(c.day, c.cell)] = cells.get((c.day, c.cell), 0) + 1
        return out

    def add_all(self, records: Iterable[tuple[str, Mapping[str, Any]]]) -> int:
        """Count many records; returns how many were new."""
        before = len(self.seen)
        for event_type, datum in records:
            self.add(event_type, datum)
        return len(self.seen) - before

    def _derived(self, event_type: str, datum: Mapping[str, Any]) -> dict[str, str]:
        return derived_values(
            event_type, datum, self.referral_sent.get, self.referral_sent.setdefault
        )

    def day_counts(self, indicator: str) -> Mapping[tuple[date, tuple[str, ...]], int]:
        """Every (day, cell) count of ``indicator``."""
        return self.counts.get(indicator, {})


def derived_values(
    event_type: str,
    datum: Mapping[str, Any],
    sent_at: Callable[[str], datetime | None],
    remember: Callable[[str, datetime], object],
) -> dict[str, str]:
    """Values of derived dimensions; remembers when each referral was sent.

    ``sent_at`` looks up, and ``remember`` keeps (first time only), the time a
    referral was created, so an answer can be put in its time-to-acknowledgement
    band; a store keeps that memory in the same transaction as the counts.
    """
    if event_type != "referral":
        return {}
    referral = identifier(datum, "payload.referral_id")
    event = field_value(datum, "payload.lifecycle_event")
    at = occurred_at(datum)
    if referral is None or at is None:
        return {}
    if event == "CREATED":
        remember(referral, at)
        return {}
    if event not in ACK_EVENTS:
        return {"time_to_acknowledgement": NOT_AN_ANSWER}
    sent = sent_at(referral)
    return {} if sent is None else {"time_to_acknowledgement": ack_band(sent, at)}


def contributions(
    catalogue: Catalogue,
    event_type: str,
    datum: Mapping[str, Any],
    derived: Mapping[str, str] | None = None,
) -> Iterator[Contribution]:
    """The cells one record adds one to, across every indicator of its event type."""
    day = occurred_day(datum)
    if day is None:
        return
    for indicator in catalogue.for_event_type(event_type):
        if indicator.selects(datum):
            yield Contribution(indicator.id, day, indicator.key(datum, derived))


def period_cells(
    indicator: Indicator,
    day_counts: Mapping[tuple[date, tuple[str, ...]], int],
    first: date,
    last: date,
) -> dict[tuple[str, ...], int]:
    """The finest cells of one period: the day counts from ``first`` to ``last``."""
    out: dict[tuple[str, ...], int] = {}
    for (day, cell), n in day_counts.items():
        if first <= day <= last and n:
            out[cell] = out.get(cell, 0) + n
    return out
