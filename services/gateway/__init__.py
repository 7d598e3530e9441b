"""The HTTP gateway: ingest through a durable outbox, pull delivery, tokens."""
