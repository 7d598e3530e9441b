"""What the demo shows: live tables, a progress line without a terminal, the summary.

Rendering only: every function turns a `Board` into rich renderables or text.
"""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Final

from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from services.demo.tally import (
    IndicatorCounts,
    Published,
    ReferralCounts,
    Snapshot,
    Verdict,
)
from services.policy import VIEWS

LATENCY_NOTE = "recorded_at -> delivery acknowledged"
# Short column headings keep the summary within 80 columns (CI logs).
SHORT: Final = {
    "return_arrival": "returns",
    "border_crossing": "crossings",
    "displacement_registration": "displacements",
    "referral": "referrals",
    "referral_overdue": "overdue notices",
}


@dataclass
class Board:
    """Everything the view shows, updated by the demo as it runs."""

    rate: float
    seed: int
    duration: float | None
    published: Published
    snapshot: Snapshot = field(default_factory=Snapshot)
    phase: str = "starting"
    elapsed: float = 0.0
    ledger_entries: int | None = None
    referrals: ReferralCounts | None = None
    indicators: IndicatorCounts | None = None


def live(board: Board) -> RenderableType:
    """The live view: a status line and four tables."""
    grid = Table.grid(padding=(0, 2))
    grid.add_row(events_in(board), rejections(board))
    grid.add_row(deliveries(board.snapshot), latency(board.snapshot))
    return Group(status(board), grid)


def status(board: Board) -> Text:
    """One line: phase, time, totals."""
    planned = f"/{board.duration:.0f}" if board.duration is not None else ""
    text = Text.assemble(
        ("puente demo ", "bold"),
        f"seed {board.seed} · {board.rate:g}/s · {board.phase} · ",
        f"{board.elapsed:.0f}{planned} s · ",
        f"published {board.published.total} · accepted "
        f"{board.snapshot.accepted_total} · rejected {board.snapshot.rejected_total}"
        f" · deliveries {board.snapshot.deliveries_total}",
    )
    if board.ledger_entries is not None:
        text.append(f" · audit ledger {board.ledger_entries}")
    if board.referrals is not None:
        text.append(f" · {referral_line(board.referrals)}")
    if board.indicators is not None:
        text.append(f" · {indicator_line(board.indicators)}")
    return text


def referral_line(counts: ReferralCounts) -> str:
    """The referral tracker's counts in one phrase."""
    return (
        f"referrals open {counts.open}, overdue {counts.overdue} "
        f"({counts.notices} notices), refused {counts.refused}"
    )


def indicator_line(counts: IndicatorCounts) -> str:
    """The indicators service's counts in one phrase."""
    return (
        f"indicators counted {counts.counted} events, "
        f"{counts.published} current totals above the threshold"
    )


def progress_line(board: Board) -> str:
    """The compact line printed every few seconds when stdout is not a terminal."""
    snap = board.snapshot
    return (
        f"demo {board.phase} t={board.elapsed:.0f}s published={board.published.total} "
        f"accepted={snap.accepted_total} rejected={snap.rejected_total} "
        f"deliveries={snap.deliveries_total} lag={snap.lag:.0f} "
        f"p50={_seconds(snap.latency(0.5))} p99={_seconds(snap.latency(0.99))}"
    )


def events_in(board: Board) -> Table:
    """Inputs per source: published by the simulator, accepted and rejected by the hub."""
    table = Table(title="Events in, per source", title_justify="left")
    table.add_column("source")
    for name in ("published", "accepted", "rejected"):
        table.add_column(name, justify="right")
    routed = board.snapshot.by_source()
    sources = sorted(board.published.by_source.keys() | routed.keys())
    for source in sources:
        accepted, rejected = routed.get(source, (0, 0))
        table.add_row(
            source, str(board.published.by_source[source]), str(accepted), str(rejected)
        )
    table.add_section()
    table.add_row(
        "total",
        str(board.published.total),
        str(board.snapshot.accepted_total),
        str(board.snapshot.rejected_total),
        style="bold",
    )
    return table


def deliveries(snap: Snapshot) -> Table:
    """Deliveries per recipient and view."""
    table = Table(title="Deliveries, per recipient and view", title_justify="left")
    table.add_column("recipient")
    for view in (*VIEWS, "total"):
        table.add_column(view, justify="right")
    per_view: Counter[str] = Counter()
    for recipient, counts in snap.deliveries_by_view().items():
        per_view.update(counts)
        table.add_row(
            recipient,
            *(_count(counts[v]) for v in VIEWS),
            str(sum(counts.values())),
        )
    table.add_section()
    table.add_row(
        "total",
        *(_count(per_view[v]) for v in VIEWS),
        str(snap.deliveries_total),
        style="bold",
    )
    return table


def rejections(board: Board) -> Table:
    """Bad inputs sent per expected reason next to the router's rejections."""
    table = Table(title="Rejections, by reason", title_justify="left")
    table.add_column("reason")
    table.add_column("bad sent", justify="right")
    table.add_column("rejected", justify="right")
    rejected = board.snapshot.rejected_by_reason()
    for reason in sorted(board.published.bad.keys() | rejected.keys()):
        table.add_row(reason, str(board.published.bad[reason]), str(rejected[reason]))
    return table


def latency(snap: Snapshot) -> Table:
    """End-to-end latency quantiles and the router's lag."""
    table = Table(title="Latency and lag", title_justify="left")
    table.add_column("recorded -> delivered")
    table.add_column("", justify="right")
    table.add_row("latency p50", _seconds(snap.latency(0.5)))
    table.add_row("latency p99", _seconds(snap.latency(0.99)))
    table.add_row("router lag (records)", f"{snap.lag:.0f}")
    return table


def published_kinds(published: Published) -> Table:
    """Good inputs published per source and event type."""
    event_types = sorted({t for _, t in published.good})
    table = Table(title="Published, per source and event type", title_justify="left")
    table.add_column("source")
    for event_type in event_types:
        table.add_column(SHORT.get(event_type, event_type), justify="right")
    for source in sorted({s for s, _ in published.good}):
        table.add_row(source, *(_count(published.good[(source, t)]) for t in event_types))
    return table


def summary_tables(board: Board) -> list[RenderableType]:
    """The summary's tables: published, rejections, deliveries."""
    return [
        published_kinds(board.published),
        rejections(board),
        deliveries(board.snapshot),
    ]


def summary_lines(board: Board, ledger: Path | None) -> list[str]:
    """The summary's plain lines: totals, latency, rejections, the ledger."""
    snap, published = board.snapshot, board.published
    lines = [
        f"published {published.total} inputs ({published.good_total} good, "
        f"{sum(published.bad.values())} bad) over {board.elapsed:.1f} s at "
        f"{board.rate:g}/s, seed {board.seed}",
        f"accepted {snap.accepted_total} · rejected {snap.rejected_total} · "
        f"duplicates {snap.duplicates:.0f} · deliveries {snap.deliveries_total}",
        f"latency p50 {_seconds(snap.latency(0.5))} · p99 "
        f"{_seconds(snap.latency(0.99))} ({LATENCY_NOTE})",
        "rejections by reason: " + _reasons(snap.rejected_by_reason()),
    ]
    if board.referrals is not None:
        lines.append(
            f"{referral_line(board.referrals)} "
            "(refused: forged or out-of-order transitions)"
        )
    if board.indicators is not None:
        lines.append(
            f"{indicator_line(board.indicators)} "
            "(after small-cell suppression; published once the period is released)"
        )
    if ledger is not None:
        entries = "" if board.ledger_entries is None else f"{board.ledger_entries} "
        lines.append(f"audit ledger: {entries}entries in {ledger}")
    return lines


def verdict_text(verdict: Verdict) -> Text:
    """The last line: all as expected, or what was not."""
    if verdict.ok:
        return Text(
            f"OK: every bad input was rejected with its expected reason "
            f"({verdict.bad_matched} of {verdict.bad_sent}) and every good input "
            "was accepted",
            style="bold green",
        )
    text = Text("NOT AS EXPECTED:", style="bold red")
    for problem in verdict.problems:
        text.append(f"\n  {problem}")
    return text


def _reasons(counts: Counter[str]) -> str:
    if not counts:
        return "none"
    return ", ".join(f"{reason}={n}" for reason, n in sorted(counts.items()))


def _count(value: int) -> str:
    return str(value) if value else "·"


def _seconds(value: float | None) -> str:
    if value is None:
        return "-"
    if value < 1:
        return f"{value * 1000:.0f} ms"
    return f"{value:.1f} s"
