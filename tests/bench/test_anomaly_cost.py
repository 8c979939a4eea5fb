"""The anomaly cost benchmark runs the pipeline's detector on every row it times."""

from __future__ import annotations

from eddy.benchmarks.anomaly_cost import measure


def test_the_timed_detector_sees_the_data_and_finds_its_spikes() -> None:
    r = measure(rows=20_000, keys=4, metrics=2, batch=1000, hst_values=200)
    # A benchmark that timed an empty loop, or fed the detector the wrong columns, would find
    # nothing; one that fed noise as anomalies would find far more rows than spikes.
    assert 0 < r["anomalies"] <= 3 * r["spikes"]
    assert r["snapshot_mb"] > 0
