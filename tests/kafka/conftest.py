"""Kafka test fixtures: a real broker per test session (see tests/fixtures_kafka.py)."""

from tests.fixtures_kafka import kafka_broker, make_topic

__all__ = ["kafka_broker", "make_topic"]
