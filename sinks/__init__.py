"""Sinks: DuckDB (plus the read-only query endpoint) and Kafka."""
