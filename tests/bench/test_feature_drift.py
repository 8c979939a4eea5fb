"""The feature-drift benchmark: a partner swap is found on the detectors' inputs, a clean run
and a run with short incidents raise no feature alert."""

from __future__ import annotations

from eddy.benchmarks.feature_drift import run_feature_drift


def test_drift_is_found_after_the_swap_and_names_the_partner() -> None:
    # 80 simulated seconds: past the detectors' 30 s warm-up, so a clean run could alert
    res = run_feature_drift(seconds=80.0, seeds=(0,), drift_at_s=30.0)
    clean, incidents, drift = res["runs"]
    assert [r["setting"] for r in res["runs"]] == ["clean", "incidents", "drift"]
    assert clean["feature_alerts"] == 0 and incidents["feature_alerts"] == 0
    assert drift["feature_alerts"] >= 1
    assert drift["delay_s"] is not None and 0 < drift["delay_s"] < 50  # before the run ends
    assert drift["names_the_partner"]
