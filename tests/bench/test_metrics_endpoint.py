"""The Prometheus /metrics endpoint: exposition of RunStats, and counters moving during a run."""

from __future__ import annotations

import threading
import time
import urllib.request
from pathlib import Path

import numpy as np
import pytest
from prometheus_client.parser import text_string_to_metric_families

from eddy.operators.stats import RunStats, lag_gauge
from eddy.sinks.prometheus import start_metrics_server


def _scrape(url: str) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    with urllib.request.urlopen(url, timeout=5) as resp:
        assert resp.status == 200
        text = resp.read().decode()
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def test_counters_gauges_and_latency_quantiles_are_exposed_and_move() -> None:
    stats = RunStats()
    stats.add("decisions", 10)
    stats.add("engine.events_in", 7)
    stats.counters["engine.watermark_lag_ms"] = 250.0
    stats.latency.add(np.full(100, 5.0))
    server = start_metrics_server(stats, 0, run_id="r1")
    try:
        first = _scrape(server.url)
        assert first[("eddy_decisions_total", (("step", "pipeline"),))] == 10
        assert first[("eddy_events_in_total", (("step", "engine"),))] == 7
        assert first[("eddy_watermark_lag_ms", (("step", "engine"),))] == 250.0
        q50 = first[("eddy_latency_quantile_ms", (("quantile", "0.5"), ("step", "pipeline")))]
        assert q50 == pytest.approx(5.0, rel=0.03)
        assert first[("eddy_latency_ms_count", (("step", "pipeline"),))] == 100
        assert first[("eddy_up", (("run_id", "r1"),))] == 1.0
        with stats.lock:
            stats.add("decisions", 5)
            stats.latency.add(np.full(100, 500.0))
        second = _scrape(server.url)
        assert second[("eddy_decisions_total", (("step", "pipeline"),))] == 15
        q99 = second[("eddy_latency_quantile_ms", (("quantile", "0.99"), ("step", "pipeline")))]
        assert q99 == pytest.approx(500.0, rel=0.03)
    finally:
        server.stop()
    with pytest.raises(OSError):
        urllib.request.urlopen(server.url, timeout=2)


def test_input_lag_is_one_gauge_series_per_partition() -> None:
    stats = RunStats()
    stats.counters[lag_gauge("requests", 0, "records")] = 5
    stats.counters[lag_gauge("requests", 2, "records")] = 7
    stats.counters[lag_gauge("outcomes", 3, "bytes")] = 100
    server = start_metrics_server(stats, 0)
    try:
        got = _scrape(server.url)
    finally:
        server.stop()
    assert got[("eddy_requests_records_lag", (("partition", "0"), ("step", "source")))] == 5
    assert got[("eddy_requests_records_lag", (("partition", "2"), ("step", "source")))] == 7
    assert got[("eddy_outcomes_bytes_lag", (("partition", "3"), ("step", "source")))] == 100


def test_bad_port_is_a_value_error() -> None:
    with pytest.raises(ValueError, match="metrics port"):
        start_metrics_server(RunStats(), 70_000)


def test_scrape_during_a_pipeline_run_sees_counters_moving(tmp_path: Path) -> None:
    from eddy.benchmarks.baselines.common import reference_spec
    from eddy.benchmarks.closed_loop import with_simulator
    from eddy.dataflows.run_options import RunOptions
    from eddy.dataflows.runner import run_pipeline

    spec = with_simulator(reference_spec(), seed=3)
    opts = RunOptions(spec, duckdb=str(tmp_path / "m.duckdb"), forever=True, seconds=60.0)
    stats = RunStats()
    stop = threading.Event()
    errors: list[BaseException] = []

    def run() -> None:
        try:
            run_pipeline(opts, stop=stop, stats=stats)
        except BaseException as e:  # surfaced by the assertion below
            errors.append(e)

    server = start_metrics_server(stats, 0)
    worker = threading.Thread(target=run, daemon=True)
    worker.start()
    key = ("eddy_decisions_total", (("step", "pipeline"),))
    seen: list[float] = []
    last: dict = {}
    try:
        deadline = time.monotonic() + 45
        while time.monotonic() < deadline and len(set(seen)) < 3 and not errors:
            last = _scrape(server.url)
            seen.append(last.get(key, 0.0))
            time.sleep(0.3)
    finally:
        stop.set()
        worker.join(timeout=60)
        server.stop()
    assert not errors, errors
    assert not worker.is_alive()
    moving = [v for v in seen if v > 0]
    assert len(set(moving)) >= 2, seen
    assert moving == sorted(moving)  # a counter never goes down
    # event time behind the wall clock (the simulator replays a fixed start date)
    assert last[("eddy_event_time_lag_ms", (("step", "engine"),))] > 0
