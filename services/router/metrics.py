"""The router's ``puente_*`` series: bounded labels, on the router's own registry."""

from __future__ import annotations

from collections.abc import Collection
from typing import Final

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

LATENCY_BUCKETS: Final = (
    0.005,
    0.01,
    0.025,
    0.05,
    0.1,
    0.25,
    0.5,
    1.0,
    2.5,
    5.0,
    10.0,
    30.0,
    60.0,
    300.0,
)
UNKNOWN: Final = "unknown"


def bounded(value: str | None, allowed: Collection[str]) -> str:
    """``value`` if it is one of ``allowed``, else ``unknown`` (bounded label sets)."""
    return value if value is not None and value in allowed else UNKNOWN


class RouterMetrics:
    """The ``puente_*`` series of event flow through the router."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.accepted = Counter(
            "puente_events_accepted",
            "Inbound events accepted for routing",
            ["source", "event_type"],
            registry=registry,
        )
        self.rejected = Counter(
            "puente_events_rejected",
            "Inbound records rejected, by reason code",
            ["source", "event_type", "reason"],
            registry=registry,
        )
        self.duplicates = Counter(
            "puente_events_duplicate",
            "Inbound events already routed (same id and content)",
            ["source", "event_type"],
            registry=registry,
        )
        self.deliveries = Counter(
            "puente_deliveries",
            "Records delivered to recipients",
            ["recipient", "event_type", "view"],
            registry=registry,
        )
        self.withheld = Counter(
            "puente_decisions_withheld",
            "Matching rules that did not deliver, by reason (consent, purpose, "
            "escalation, ...)",
            ["recipient", "event_type", "reason"],
            registry=registry,
        )
        self.latency = Histogram(
            "puente_delivery_latency_seconds",
            "End-to-end latency from envelope.recorded_at to delivery acknowledged",
            ["event_type"],
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.lag = Gauge(
            "puente_consumer_lag",
            "Records not yet consumed (high-water minus position)",
            ["group"],
            registry=registry,
        )
        self.batch_seconds = Histogram(
            "puente_router_batch_seconds",
            "Time to route one consumed batch",
            buckets=LATENCY_BUCKETS,
            registry=registry,
        )
        self.errors = Counter(
            "puente_router_errors",
            "Unexpected routing errors (record rejected as other)",
            registry=registry,
        )
        self.partitions_held = Gauge(
            "puente_router_partitions_held",
            "Inbound partitions held at a refused record whose rejection topic is "
            "missing and may not be created by the router (the ERROR log names them)",
            registry=registry,
        )
        self.output_failures = Counter(
            "puente_router_output_failures",
            "Batches whose outputs the broker did not accept",
            registry=registry,
        )
