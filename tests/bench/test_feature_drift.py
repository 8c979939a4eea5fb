"""The feature-drift benchmark runs end to end on a short simulation."""

from __future__ import annotations

from eddy.benchmarks.feature_drift import run_feature_drift


def test_tiny_feature_drift_run_reports_every_setting() -> None:
    res = run_feature_drift(seconds=20.0, seeds=(0,), drift_at_s=10.0)
    assert [r["setting"] for r in res["runs"]] == ["clean", "incidents", "drift"]
    clean = res["runs"][0]
    assert clean["feature_alerts"] == 0  # 30 s warm-up: nothing can alert in 20 s
    assert set(res["runs"][2]) >= {"delay_s", "names_the_partner"}
