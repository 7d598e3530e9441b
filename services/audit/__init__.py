"""The disclosure ledger: hub.audit -> hash-chained SQLite with signed checkpoints."""
