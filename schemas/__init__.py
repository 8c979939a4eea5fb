"""What data looks like: input events, DuckDB tables and Kafka topics."""

from schemas import events, tables, topics

__all__ = ["events", "tables", "topics"]
