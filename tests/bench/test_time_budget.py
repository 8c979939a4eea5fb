"""The time-budget benchmark runs end to end on a short stream and reports every part."""

from __future__ import annotations

import math

from eddy.benchmarks.time_budget import run_time_budget


def test_tiny_time_budget_reports_every_part() -> None:
    res = run_time_budget(2_000)
    assert res["decisions_rows"] == 2_000  # the engine decided every request it was given
    assert 2_000 < res["events"] <= 4_000  # the requests and the outcomes that arrived
    assert math.isfinite(res["pipeline_without_duckdb_events_per_s"])
    assert res["pipeline_without_duckdb_events_per_s"] > 0
    # a step's fixed cost is paid 20 times as often with 50-row batches (CPU time: load-proof)
    us = res["engine_us_per_event"]
    assert set(us) == {50, 1_000} and us[50] > us[1_000] > 0
    assert set(res["duckdb_insert_cpu_s"]) == {"table", "no_primary_key", "no_context"}
