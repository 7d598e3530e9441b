"""The gateway's metrics, on the service's own registry (bounded labels only)."""

from __future__ import annotations

from collections.abc import Callable

from prometheus_client import CollectorRegistry, Counter, Gauge


class GatewayMetrics:
    """Request, acceptance, outbox and relay metrics."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.registry = registry
        self.requests = Counter(
            "puente_gateway_requests",
            "HTTP requests by route template and status code",
            ["route", "status"],
            registry=registry,
        )
        self.accepted = Counter(
            "puente_events_accepted",
            "Events durably accepted into the outbox",
            ["source", "event_type"],
            registry=registry,
        )
        self.outbox_depth = Gauge(
            "puente_outbox_depth",
            "Events accepted but not yet relayed",
            registry=registry,
        )
        self.oldest_unsent = Gauge(
            "puente_outbox_oldest_unsent_seconds",
            "Age of the oldest event not yet relayed",
            registry=registry,
        )
        self.relay_errors = Counter(
            "puente_relay_errors",
            "Failed relay attempts (broker errors)",
            registry=registry,
        )
        self.relay_refused = Counter(
            "puente_relay_refused",
            "Outbox events the broker refused for good (never delivered; a refusal "
            "notice goes in their place), by reason",
            ["reason"],
            registry=registry,
        )
        self.relay_reported = Counter(
            "puente_relay_refusals_reported",
            "Refused outbox events whose refusal notice the broker acknowledged (the "
            "router answers their publishers on hub.rejected.<source>)",
            registry=registry,
        )
        self.relay_unreported = Gauge(
            "puente_relay_refusals_unreported",
            "Refused outbox events whose publisher is not told yet (notice due, or "
            "refused by the broker as well)",
            registry=registry,
        )
        self.relay_published = Counter(
            "puente_relay_published",
            "Events the broker acknowledged from the outbox",
            registry=registry,
        )

    def watch_outbox(
        self, depth: Callable[[], float], oldest: Callable[[], float]
    ) -> None:
        """Read outbox depth and age at scrape time."""
        self.outbox_depth.set_function(depth)
        self.oldest_unsent.set_function(oldest)
