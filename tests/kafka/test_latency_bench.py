"""The Kafka latency benchmark runs end to end against the real broker at a tiny rate."""

from __future__ import annotations

import pytest

from eddy.benchmarks.kafka_latency import run_rate
from tests.fixtures_kafka import KafkaBroker

pytestmark = pytest.mark.kafka


def test_tiny_latency_run_answers_every_request_and_reports_the_cpu_split(
    kafka_broker: KafkaBroker,
) -> None:
    r = run_rate(kafka_broker.bootstrap, 400, 2.0, warmup_s=0.5, broker_pid=kafka_broker.pid)
    assert r["missing"] == 0 and r["requests"] == 801 and r["outcomes"] > 0
    assert r["sustained"]
    assert 0 < r["p50_ms"] <= r["p95_ms"] <= r["p99_ms"] <= r["max_ms"]
    assert set(r["breakdown_ms"]) == {"kafka_in", "engine", "kafka_out"}
    cores = r["cpu_cores"]
    assert set(cores) == {"eddy", "eddy_runqueue_wait", "broker", "load_generator", "machine"}
    # 800 requests decided, published and consumed in 2 s: each process did measurable work
    # (a meter reading the wrong process or no clock reads 0), and the machine's CPU use
    # includes eddy's
    assert 0 < cores["eddy"] <= cores["machine"]
    assert cores["broker"] is not None and cores["broker"] > 0
    assert cores["load_generator"] is not None and cores["load_generator"] > 0
