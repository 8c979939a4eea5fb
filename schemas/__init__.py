"""What data looks like: input events, DuckDB tables and Kafka topics."""

from eddy.schemas import events, tables, topics

__all__ = ["events", "tables", "topics"]
