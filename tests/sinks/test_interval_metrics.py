"""The ``latency_p*_ms`` rows of ``metrics`` describe their own interval (since the previous
row): a stall shows in the row of the interval it happened in and not in the next one, while
the run-wide histogram (the end-of-run summary) keeps everything."""

from __future__ import annotations

import time

import numpy as np
import pytest

from eddy.operators.stats import LatencyHistogram, RunStats
from eddy.schemas.results import Results
from eddy.sinks.duckdb import DuckDBWriter
from eddy.sinks.duckdb_sink import DuckDBSink, metrics_rows

NORMAL_MS, STALL_MS = 40.0, 3_000.0


def _latency(rows: dict) -> dict[str, float]:
    return {
        str(name): float(value)
        for step, name, value in zip(rows["step"], rows["name"], rows["value"], strict=True)
        if step == "duckdb" and str(name).startswith("latency_")
    }


def _interval(stats: RunStats, values_ms: np.ndarray) -> None:
    with stats.lock:
        stats.add_latency(values_ms)


def test_a_stall_shows_in_its_interval_and_not_in_the_next(tmp_path):
    stats = RunStats()
    rng = np.random.default_rng(0)
    with DuckDBWriter(str(tmp_path / "m.duckdb")) as writer:
        _interval(stats, rng.uniform(30, 50, 1000))  # second 1: normal
        writer.write("metrics", metrics_rows("run", stats, 1_000))
        stalled = rng.uniform(30, 50, 1000)
        stalled[:50] = STALL_MS  # second 2: 5% of the events waited 3 s
        _interval(stats, stalled)
        writer.write("metrics", metrics_rows("run", stats, 2_000))
        _interval(stats, rng.uniform(30, 50, 1000))  # second 3: normal again
        writer.write("metrics", metrics_rows("run", stats, 3_000))
        _, rows = writer.query(
            "SELECT epoch_ms(ts), value FROM metrics WHERE step = 'duckdb' "
            "AND name = 'latency_p99_ms' ORDER BY ts"
        )
    p99 = dict(rows)
    assert p99[2_000] == pytest.approx(STALL_MS, rel=0.03)
    assert p99[1_000] < 60 and p99[3_000] < 60
    # the run-wide histogram, what the end-of-run summary reports, still holds the stall
    _, run_wide = stats.view()
    assert run_wide.total == 3000
    assert run_wide.quantile(0.99) == pytest.approx(STALL_MS, rel=0.03)


def test_each_row_counts_only_its_own_interval():
    stats = RunStats()
    _interval(stats, np.full(100, NORMAL_MS))
    first = _latency(metrics_rows("run", stats, 1))
    assert first["latency_p50_ms"] == pytest.approx(NORMAL_MS, rel=0.03)
    _interval(stats, np.full(10, 500.0))
    second = _latency(metrics_rows("run", stats, 2))
    # cumulative quantiles would give 40 ms here (100 of the 110 events)
    assert second["latency_p50_ms"] == pytest.approx(500.0, rel=0.03)
    assert stats.view()[1].total == 110


def test_an_interval_without_events_has_no_latency_rows():
    stats = RunStats()
    stats.add("events", 5)
    _interval(stats, np.full(10, NORMAL_MS))
    assert set(_latency(metrics_rows("run", stats, 1))) == {
        "latency_p50_ms",
        "latency_p95_ms",
        "latency_p99_ms",
    }
    quiet = metrics_rows("run", stats, 2)
    assert _latency(quiet) == {} and "events" in list(quiet["name"])  # counters stay


def test_weighted_latencies_count_each_value_that_many_times():
    hist = LatencyHistogram()
    hist.add(np.repeat([10.0, 1000.0], [990, 10]))
    weighted = LatencyHistogram.bucket_counts(np.array([10.0, 1000.0]), np.array([990, 10]))
    assert np.array_equal(weighted, hist.counts)


def test_the_sink_writes_the_interval_of_its_flushes(tmp_path):
    """Through the sink: a batch read 3 s before it became readable is what the next metrics
    row (here the last one, written at close) reports."""
    writer = DuckDBWriter(str(tmp_path / "m.duckdb"))
    stats = RunStats()
    part = DuckDBSink(writer, stats, "run-1").build_part("duckdb", "duckdb", None)
    try:
        late = Results()
        late.count("events", 100)
        late.ingest.append((int(time.time() * 1000 - STALL_MS), 100))
        part.write_batch([late])
    finally:
        part.close()
    _, rows = writer.query(
        "SELECT value FROM metrics WHERE step = 'duckdb' AND name = 'latency_p99_ms' "
        "ORDER BY ts DESC LIMIT 1"
    )
    writer.close()
    assert rows[0][0] >= STALL_MS * 0.97
    assert stats.take_interval().total == 0  # written: the next interval starts empty
