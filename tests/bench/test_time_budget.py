"""The time-budget benchmark runs end to end on a short stream and reports every part."""

from __future__ import annotations

from eddy.benchmarks.time_budget import run_time_budget


def test_tiny_time_budget_reports_every_part() -> None:
    res = run_time_budget(2_000)
    assert res["pipeline_without_duckdb_events_per_s"] > 0
    assert set(res["engine_us_per_event"]) == {50, 1_000}
    ins = res["duckdb_insert_cpu_s"]
    assert set(ins) == {"table", "no_primary_key", "no_context"} and res["decisions_rows"] == 2_000
