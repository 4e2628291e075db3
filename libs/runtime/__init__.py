"""Shared runtime every service stands on: settings, database, event store, outbox and relay,
inbox, Kafka consumer wiring, telemetry and the HTTP app factory. Services differ only in
their domain and handlers."""
