"""Kafka topic names. Inputs are configurable; these are the defaults and the output topics."""

from __future__ import annotations

__all__ = [
    "ANOMALIES",
    "DEAD_LETTERS",
    "DECISIONS",
    "DRIFT_ALERTS",
    "METRICS",
    "OUTCOMES",
    "OUTPUT_TOPICS",
    "REQUESTS",
]

REQUESTS = "eddy.requests"
OUTCOMES = "eddy.outcomes"
DECISIONS = "eddy.decisions"
ANOMALIES = "eddy.anomalies"
METRICS = "eddy.metrics"
DEAD_LETTERS = "eddy.dead_letters"
DRIFT_ALERTS = "eddy.drift_alerts"

#: table name -> topic it is also published to
OUTPUT_TOPICS: dict[str, str] = {
    "decisions": DECISIONS,
    "anomalies": ANOMALIES,
    "metrics": METRICS,
    "dead_letters": DEAD_LETTERS,
    "drift_alerts": DRIFT_ALERTS,
}
