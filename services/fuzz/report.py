"""The campaigns' figures as text lines (the CLI prints them; the README quotes them)."""

from __future__ import annotations

from collections import Counter

from services.fuzz.coverage import CoverageFigures
from services.fuzz.gateway import GatewayFigures
from services.fuzz.router import RouterFigures


def _counts(counter: Counter[str] | Counter[int]) -> str:
    return ", ".join(f"{key} {count:,}" for key, count in counter.most_common())


def _verdict(ok: bool) -> str:
    return "PASS" if ok else "FAIL"


def router_lines(figures: RouterFigures) -> list[str]:
    """The router campaign's figures and invariants."""
    return [
        f"router campaign: {figures.inputs:,} inputs in {figures.rounds} rounds, "
        f"{figures.elapsed:,.1f} s ({figures.throughput:,.0f} inputs/s)",
        f"  made:      {_counts(figures.made)}",
        f"  rejected:  {sum(figures.rejected.values()):,} ({_counts(figures.rejected)})",
        f"  routed:    {figures.routed_events:,} events, {figures.deliveries:,} "
        f"deliveries, {figures.audit_entries:,} audit entries",
        f"  no rule:   {figures.no_rule_events:,}   duplicates: {figures.duplicates:,}",
        f"  answered:  {figures.answered:,} of {figures.inputs - figures.unsent:,} "
        f"sent ({figures.unsent:,} the broker refused)   "
        f"unanswered: {figures.unanswered:,}",
        f"  crashes:   {figures.crashes:,} (stalled rounds {figures.stalled_rounds})",
        f"  deliveries without a ledger entry: {figures.unaudited_deliveries:,}   "
        f"audit records the ledger refuses: {figures.ledger_refused:,}",
        f"  delivered ledger entries without a delivery: "
        f"{figures.entries_without_delivery:,}",
        f"  events routed again under another spelling of their id: "
        f"{figures.respelled_routed:,}",
        *(f"  ! {sample}" for sample in figures.samples),
        f"  invariants: {_verdict(figures.ok)}",
    ]


def gateway_lines(figures: GatewayFigures) -> list[str]:
    """The gateway campaign's figures and invariants."""
    return [
        f"gateway campaign: {figures.requests:,} requests, {figures.elapsed:,.1f} s "
        f"({figures.throughput:,.0f} requests/s)",
        f"  made:      {_counts(figures.made)}",
        f"  statuses:  {_counts(figures.statuses)}",
        f"  5xx: {figures.server_errors:,}   4xx without problem+json: "
        f"{figures.unexplained:,}   no answer: {figures.dropped:,}   "
        f"crashes: {figures.crashes:,}",
        *(f"  ! {sample}" for sample in figures.samples),
        *(f"  saved: {path}" for path in figures.saved[:5]),
        f"  invariants: {_verdict(figures.ok)}",
    ]


def coverage_lines(figures: CoverageFigures) -> list[str]:
    """The coverage-guided campaign's figures (libFuzzer's own count and rate)."""
    lines = [
        f"coverage-guided (atheris) on Pipeline.inspect/deliver: {figures.execs:,} "
        f"executions, {figures.seconds:,.1f} s ({figures.execs_per_second:,} exec/s "
        "as libFuzzer reports)",
        f"  invariants: {_verdict(not figures.crashed)}",
    ]
    if figures.crashed:
        lines[1:1] = [f"  ! {line}" for line in figures.tail.splitlines()[-12:]]
    return lines
