"""The audit service's ``puente_audit_*`` series (on its own registry, no id labels)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge


class AuditMetrics:
    """Counters and gauges of ledger ingestion."""

    def __init__(self, registry: CollectorRegistry) -> None:
        self.appended = Counter(
            "puente_audit_entries_appended", "Audit entries appended to the ledger",
            registry=registry,
        )  # fmt: skip
        self.duplicates = Counter(
            "puente_audit_duplicates_skipped",
            "Audit entries not appended because their audit_id was already in the ledger",
            registry=registry,
        )  # fmt: skip
        self.skipped = Counter(
            "puente_audit_records_skipped",
            "Records on the audit topic that were not admissible audit entries",
            registry=registry,
        )  # fmt: skip
        self.checkpoints = Counter(
            "puente_audit_checkpoints", "Signed checkpoints taken", registry=registry
        )
        self.entries = Gauge(
            "puente_audit_ledger_entries", "Entries in the ledger", registry=registry
        )
        self.failures = Counter(
            "puente_audit_ingest_failures",
            "Batches the ledger could not take; they are read again from its positions",
            registry=registry,
        )
        self.witness_failures = Counter(
            "puente_audit_witness_failures",
            "Signed heads that could not be appended to the witness file",
            registry=registry,
        )
        self.lag = Gauge(
            "puente_audit_consumer_lag",
            "Audit records not yet in the ledger (high-water minus position)",
            registry=registry,
        )
